// --state DIR: mh-aggregate's snapshots in an LMDB environment of their own. One write
// transaction replaces the snapshot (the Aggregator's bytes) and its meta record (format,
// fingerprint of the options, barrier number, time), so a crash at any moment leaves the
// previous snapshot or the new one, never half of one.
#pragma once

#include "core/log.h"
#include "store/lmdb.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace mh::aggregate {

constexpr uint64_t k_state_format = 1;
constexpr size_t k_state_map_bytes = size_t{4} << 30;  // address space, not disk: LMDB maps sparsely

struct Snapshot {
    uint64_t format = 0;
    uint64_t fingerprint = 0;
    uint64_t barrier = 0;    // the barrier it was taken at; 0 for SIGTERM, interval, end of input
    int64_t saved_ns = 0;
    std::string bytes;
};

class StateStore {
  public:
    // Opens (creating the directory and environment if needed) `dir`. With `reset`, what is
    // there is removed first. An environment LMDB cannot open is Error(config) naming
    // --reset-state.
    StateStore(const std::string& dir, bool reset, Log& log);
    ~StateStore();

    // The last snapshot, if any. Throws Error(config) when the records are unreadable.
    std::optional<Snapshot> load();
    void save(uint64_t fingerprint, uint64_t barrier, std::string_view bytes);
    const std::string& dir() const { return m_dir; }

  private:
    std::string m_dir;
    Log& m_log;
    std::unique_ptr<store::Env> m_env;
    MDB_dbi m_table = 0;
};

}  // namespace mh::aggregate
