#include "aggregate/state.h"

#include "aggregate/sketch.h"
#include "core/error.h"
#include "message/time.h"

#include <fmt/format.h>

#include <filesystem>
#include <system_error>

namespace mh::aggregate {
namespace {

constexpr const char* k_table = "aggregate";
constexpr std::string_view k_meta_key = "meta";
constexpr std::string_view k_snapshot_key = "snapshot";

std::string way_out(const std::string& dir) {
    return fmt::format("restart with --reset-state to discard it (open windows and detector "
                       "state in {} are lost), or point --state elsewhere", dir);
}

}  // namespace

StateStore::StateStore(const std::string& dir, bool reset, Log& log) : m_dir(dir), m_log(log) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (reset) {
        for (const char* name : {"data.mdb", "lock.mdb"}) fs::remove(fs::path(dir) / name, ec);
        m_log.info("--reset-state: starting without saved state in {}", dir);
    }
    fs::create_directories(dir, ec);
    if (ec)
        throw Error(ExitCode::io, fmt::format("cannot create the --state directory {}: {}", dir, ec.message()));
    try {
        store::EnvConfig config;
        config.access = store::Access::read_write;
        config.map_bytes = k_state_map_bytes;
        config.max_tables = 2;
        m_env = std::make_unique<store::Env>(dir, config);
        store::Txn txn(*m_env, store::Txn::Kind::write);
        m_table = *store::open_table(txn, k_table, MDB_CREATE);
        txn.commit();
    } catch (const store::LmdbError& error) {
        if (error.rc() == MDB_INVALID || error.rc() == MDB_VERSION_MISMATCH || error.rc() == MDB_CORRUPTED)
            throw Error(ExitCode::config, fmt::format("the state in {} is not a readable LMDB environment ({}); {}",
                                                      dir, error.what(), way_out(dir)));
        throw;
    }
}

StateStore::~StateStore() = default;

std::optional<Snapshot> StateStore::load() {
    store::Txn txn(*m_env, store::Txn::Kind::read);
    auto meta = txn.get(m_table, store::as_bytes(k_meta_key));
    if (!meta) return std::nullopt;
    Snapshot snapshot;
    std::span<const std::byte> in = *meta;
    uint64_t saved;
    if (!get_u64(in, snapshot.format) || !get_u64(in, snapshot.fingerprint) || !get_u64(in, snapshot.barrier) ||
        !get_u64(in, saved))
        throw Error(ExitCode::config, fmt::format("the state in {} is corrupt (a short meta record); {}", m_dir,
                                                  way_out(m_dir)));
    snapshot.saved_ns = static_cast<int64_t>(saved);
    if (snapshot.format != k_state_format)
        throw Error(ExitCode::config,
                    fmt::format("the state in {} has format {}, this mh-aggregate reads format {}; {}", m_dir,
                                snapshot.format, k_state_format, way_out(m_dir)));
    auto bytes = txn.get(m_table, store::as_bytes(k_snapshot_key));
    if (!bytes)
        throw Error(ExitCode::config, fmt::format("the state in {} has a meta record but no snapshot; {}", m_dir,
                                                  way_out(m_dir)));
    snapshot.bytes.assign(reinterpret_cast<const char*>(bytes->data()), bytes->size());
    return snapshot;
}

void StateStore::save(uint64_t fingerprint, uint64_t barrier, std::string_view bytes) {
    std::string meta;
    put_u64(meta, k_state_format);
    put_u64(meta, fingerprint);
    put_u64(meta, barrier);
    put_u64(meta, static_cast<uint64_t>(wall_clock_ns()));
    store::Txn txn(*m_env, store::Txn::Kind::write);
    txn.put(m_table, store::as_bytes(k_snapshot_key), store::as_bytes(bytes));
    txn.put(m_table, store::as_bytes(k_meta_key), store::as_bytes(meta));
    txn.commit();
}

}  // namespace mh::aggregate
