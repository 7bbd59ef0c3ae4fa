// mh-store's durable history: messages kept in LMDB under their ids, with an index by
// event time and one by (source, time). Writes come in batches (group commit), each one
// LMDB transaction: all of it is stored or none of it. Replayed ids are skipped. Readers
// (query, stat, check) see a consistent snapshot while a writer goes on.
// The table layout is in store/layout.h.
#pragma once

#include "core/stop.h"
#include "expr/expr.h"
#include "message/id.h"
#include "store/layout.h"
#include "store/lmdb.h"
#include "wire/frame.h"
#include "wire/stream.h"

#include <capnp/common.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace mh::store {

constexpr size_t k_initial_map_bytes = size_t{64} << 20;  // grows by doubling as needed
constexpr size_t k_max_map_bytes = size_t{1} << 40;       // 1 TiB of address space
constexpr size_t k_min_map_bytes = size_t{64} << 10;
// Free space below which a failed write (EIO: LMDB's word for a short write) means a full disk.
constexpr size_t k_disk_slack_bytes = size_t{4} << 20;

enum class Create { no, yes };

struct StoreConfig {
    Access access = Access::read_only;
    Sync sync = Sync::commit;
    Create create = Create::no;  // read_write only: make the directory and tables if missing
    size_t initial_map_bytes = k_initial_map_bytes;
    size_t max_map_bytes = k_max_map_bytes;  // growing past this is a full store (exit 74)
};

// A commit failed for want of room: the map reached --max-size (Room::map), or the file
// system holding the store is full (Room::disk). Nothing of the batch was stored; it may
// be committed again once there is room.
class StoreFull : public Error {
public:
    enum class Room { map, disk };
    StoreFull(Room room, const std::string& what) : Error(ExitCode::io, what), m_room(room) {}
    Room room() const { return m_room; }

private:
    Room m_room;
};

// Why a frame was not taken into a batch.
enum class Refusal { garbled, no_id, bad_source };

struct Refused {
    Refusal reason;
    std::string text;
};

struct Added {};
struct BarrierSeen {
    uint64_t number;
};
using AddResult = std::variant<Added, BarrierSeen, Refused>;

// Frames waiting for one commit, copied (word aligned) out of the input's buffer.
class Batch {
public:
    // Checks the frame (every pointer, wire::check_frame) and takes a message in, or says
    // why not. A barrier is not a message: it is reported and not taken.
    AddResult add(const wire::Frame& frame, const wire::FrameLimits& limits);

    size_t size() const { return m_entries.size(); }
    bool empty() const { return m_entries.empty(); }
    size_t bytes() const { return m_words.size() * sizeof(capnp::word); }
    void clear();

    struct Entry {
        size_t word_offset;
        size_t word_count;
        MessageId id;
        int64_t time_ns;
        size_t source_offset;
        size_t source_size;
    };
    const std::vector<Entry>& entries() const { return m_entries; }
    Bytes frame_bytes(const Entry& entry) const;
    std::string_view source(const Entry& entry) const { return {m_sources.data() + entry.source_offset, entry.source_size}; }

private:
    std::vector<capnp::word> m_words;
    std::vector<Entry> m_entries;
    std::string m_sources;
};

struct CommitResult {
    uint64_t stored = 0;
    uint64_t duplicates = 0;  // ids already in the store (or twice in the batch)
    uint64_t bytes = 0;       // frame bytes of what was stored
    unsigned map_growths = 0;
};

struct Query {
    int64_t from_ns = std::numeric_limits<int64_t>::min();  // inclusive
    int64_t to_ns = std::numeric_limits<int64_t>::max();    // exclusive
    std::optional<std::string> source;                      // reads only this source's entries
    const expr::Symbols* symbols = nullptr;                 // with `where`
    const expr::Expression* where = nullptr;
    uint64_t limit = 0;  // 0: no limit
    int64_t now_ns = 0;  // what now() is in `where`
    const StopFlag* stop = nullptr;
    wire::FrameLimits limits;
};

struct QueryResult {
    uint64_t entries_read = 0;  // index entries looked at: the work the query did
    uint64_t matched = 0;       // frames handed to the sink
};

// What retain() keeps: messages younger than max_age (by event time, against now_ns) and,
// oldest first out, no more than max_bytes of frames in all.
struct Retention {
    std::optional<int64_t> max_age_ns;
    std::optional<uint64_t> max_bytes;
    int64_t now_ns = 0;
};

struct RetainResult {
    uint64_t deleted = 0;
    uint64_t bytes = 0;  // frame bytes of what was deleted
};

struct ScanResult {
    uint64_t count = 0;
    std::optional<MessageId> last;  // the id of the last message handed out
};

struct SourceCount {
    std::string source;
    uint64_t messages = 0;
};

struct Stats {
    uint64_t messages = 0;
    uint64_t bytes = 0;
    std::optional<int64_t> first_ns, last_ns;  // event times, when there are messages
    uint64_t sources = 0;
    std::vector<SourceCount> top_sources;  // most messages first, ties by name
    size_t map_bytes = 0;
    size_t page_bytes = 0;
    size_t used_pages = 0;
};

struct CheckReport {
    uint64_t messages = 0;
    uint64_t problems = 0;
    std::vector<std::string> details;  // the first few problems, one line each
    bool sound() const { return problems == 0; }
};

class Store {
public:
    // Throws Error(io) naming the directory when there is no store there (and it may not be
    // created), or LmdbError when LMDB cannot open it.
    Store(const std::string& directory, const StoreConfig& config);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // One transaction for the whole batch; duplicates are skipped. When the map is full it
    // grows (doubling, up to max_map_bytes) and the batch is tried again. A full disk or
    // store throws StoreFull and leaves the store as the last commit left it. Other
    // failures throw LmdbError.
    CommitResult commit(const Batch& batch);

    // Frames in event-time order (within the source for a source query) go to `sink`.
    QueryResult query(const Query& query, wire::FrameSink& sink);

    // Messages in id order, which is the order they were ingested in, after `after`
    // (exclusive; nullopt: from the first), at most `limit` of them, each handed to `each`
    // while one read transaction is open. For tail and replay.
    ScanResult scan_ids(const std::optional<MessageId>& after, uint64_t limit,
                        const std::function<void(const wire::Frame&)>& each);
    std::optional<MessageId> last_id();

    // The stored sources that `pattern` names: itself when it has no glob characters
    // (* ? [ \) and is stored, otherwise those it matches, in byte order. Reads the source
    // index's keys only, from the pattern's literal prefix on.
    std::vector<std::string> sources_matching(std::string_view pattern);

    // The event times of the first and last message of `source` in [from_ns, to_ns), from
    // the source index (two cursor positionings); nullopt when it has none there.
    struct TimeRange {
        int64_t first_ns, last_ns;
    };
    std::optional<TimeRange> source_time_range(std::string_view source, int64_t from_ns, int64_t to_ns);

    // Deletes the oldest messages (by event time) with their index entries until the
    // retention holds, in transactions of a bounded size so readers and appenders go on.
    RetainResult retain(const Retention& retention);

    Stats stat(size_t top_sources = 10);
    uint64_t message_count();  // from the table's own count: no scan
    CheckReport check(size_t max_details = 20);

    Env& env() { return *m_env; }
    size_t map_bytes() const { return m_map_bytes; }
    const std::string& directory() const { return m_directory; }

    struct Tables {
        MDB_dbi messages, by_time, by_source, meta;
    };
    const Tables& tables() const { return m_tables; }

private:
    class Snapshot;
    void grow_map();
    std::optional<uint64_t> disk_full(int rc, size_t batch_bytes) const;
    void follow_resize();

    std::string m_directory;
    StoreConfig m_config;
    std::unique_ptr<Env> m_env;
    Tables m_tables{};
    size_t m_map_bytes = 0;
    // Read transactions of this process hold it shared; changing the map size (which LMDB
    // allows only with no transaction active in the process) holds it exclusively.
    std::shared_mutex m_map_mutex;
    std::vector<std::pair<std::string_view, TimeKey>> m_source_entries;  // commit's scratch
    struct SourceOrder {  // commit's scratch for ordering the source index's writes
        std::unordered_map<std::string_view, uint32_t> rank;
        std::vector<std::string_view> names;
        std::vector<uint32_t> entry_rank, by_name, position, start, sorted;
    };
    SourceOrder m_source_order;
};

}  // namespace mh::store
