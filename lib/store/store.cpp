#include "store/store.h"

#include "expr/glob.h"
#include "wire/frame_opener.h"
#include "store/layout.h"

#include <capnp/serialize.h>
#include <fmt/format.h>
#include <kj/exception.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace mh::store {

namespace {

std::string id_text(std::span<const uint8_t> id) {
    if (id.size() != k_id_bytes) return fmt::format("<{}-byte id>", id.size());
    char text[k_id_text_chars];
    format_id(id, text);
    return std::string(text, k_id_text_chars);
}

std::string id_text(Bytes id) {
    return id_text(std::span(reinterpret_cast<const uint8_t*>(id.data()), id.size()));
}

std::span<const uint8_t> id_span(const std::byte* p) { return {reinterpret_cast<const uint8_t*>(p), k_id_bytes}; }

Bytes bytes_of(const auto& array) { return std::as_bytes(std::span(array)); }

// LMDB hands out values at 2-byte alignment; Cap'n Proto reads whole words.
wire::Frame aligned_copy(Bytes value, std::vector<capnp::word>& buffer) {
    buffer.resize((value.size() + sizeof(capnp::word) - 1) / sizeof(capnp::word));
    if (!value.empty()) std::memcpy(buffer.data(), value.data(), value.size());
    return {buffer.data(), value.size() / sizeof(capnp::word)};
}

// The stored frame itself when LMDB placed it on a word boundary (frames are whole words,
// so in pages of equal-sized frames they all are), else an aligned copy.
wire::Frame aligned(Bytes value, std::vector<capnp::word>& buffer) {
    if (reinterpret_cast<uintptr_t>(value.data()) % alignof(capnp::word) == 0 && value.size() % sizeof(capnp::word) == 0)
        return {reinterpret_cast<const capnp::word*>(value.data()), value.size() / sizeof(capnp::word)};
    return aligned_copy(value, buffer);
}

// Stored frames may be larger than today's --max-frame: a frame is read with limits of its own size.
wire::FrameLimits limits_for(Bytes value) {
    return {std::max(value.size(), wire::k_default_max_frame_bytes)};
}

struct Header {
    MessageId id{};
    bool id_ok = false;
    int64_t time_ns = 0;
    std::string source;
};

// The header of a stored message, or nullopt when it cannot be read (check reports why).
std::optional<Header> read_header(Bytes value, std::vector<capnp::word>& buffer) {
    if (value.size() % sizeof(capnp::word) != 0) return std::nullopt;
    wire::Frame frame = aligned_copy(value, buffer);
    try {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                             wire::reader_options(limits_for(value)));
        auto root = reader.getRoot<schema::Message>();
        Header header;
        auto id = root.getId();
        header.id_ok = id.size() == k_id_bytes;
        if (header.id_ok) std::memcpy(header.id.data(), id.begin(), k_id_bytes);
        header.time_ns = root.getTime();
        auto source = root.getSource();
        header.source.assign(source.begin(), source.size());
        return header;
    } catch (const kj::Exception&) {
        return std::nullopt;
    }
}

uint64_t read_u64(std::optional<Bytes> value) {
    uint64_t number = 0;
    if (value && value->size() == sizeof(number)) std::memcpy(&number, value->data(), sizeof(number));
    return number;
}

bool path_exists(const std::string& path) {
    struct stat info{};
    return ::stat(path.c_str(), &info) == 0;
}

// The last key of a table, the bound past which keys may be appended. A key of another
// size (a damaged table) disables appending: every key then goes through the search.
template <class Key>
std::optional<Key> last_key(Cursor& cursor) {
    MDB_val key{}, value{};
    if (!cursor.move(MDB_LAST, key, value)) return std::nullopt;
    Key last;
    if (key.mv_size != sizeof(Key)) std::memset(&last, 0xff, sizeof(Key));
    else std::memcpy(&last, key.mv_data, sizeof(Key));
    return last;
}

// LMDB maps its lock file and writes reader slots through the mapping: on a full file
// system (tmpfs, or any with sparse files) a page of it not yet backed by storage is a
// SIGBUS, not an error. Backing the whole file first turns that into ENOSPC here.
// Best effort for readers, who may not be allowed to write in the directory.
constexpr off_t k_lock_file_bytes = 8192;  // what LMDB makes for its default 126 readers

// The bytes free on the file system holding `path`, if it can be told.
std::optional<uint64_t> free_bytes(const std::string& path) {
    struct statvfs fs{};
    if (::statvfs(path.c_str(), &fs) != 0) return std::nullopt;
    return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

void back_lock_file(const std::string& directory, bool writable) {
    std::string path = directory + "/lock.mdb";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;  // LMDB will say why it cannot open it
    struct stat info{};
    int rc = ::fstat(fd, &info) == 0 ? ::posix_fallocate(fd, 0, std::max<off_t>(info.st_size, k_lock_file_bytes)) : 0;
    ::close(fd);
    if (writable && (rc == ENOSPC || rc == EDQUOT))
        throw StoreFull(StoreFull::Room::disk,
                        fmt::format("the file system holding '{}' is full ({} bytes free): there is no room even "
                                    "for its lock file; free space there",
                                    directory, free_bytes(directory).value_or(0)));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Batch

AddResult Batch::add(const wire::Frame& frame, const wire::FrameLimits& limits) {
    // Opened once: checked by the opener's walk (or Cap'n Proto's checked reader), every part
    // judged by check_message, then read.
    wire::FrameOpener opener(limits);
    if (auto reason = opener.open(frame)) return Refused{Refusal::garbled, *reason};
    auto root = opener.message();
    if (auto reason = wire::check_message(root)) return Refused{Refusal::garbled, *reason};
    if (root.getControl().isBarrier()) return BarrierSeen{root.getControl().getBarrier().getNumber()};

    auto id = root.getId();
    if (id.size() != k_id_bytes)
        return Refused{Refusal::no_id, id.size() == 0 ? std::string("message has no id")
                                                      : fmt::format("id of {} bytes, not {}", id.size(), k_id_bytes)};
    auto source = root.getSource();
    std::string_view source_text(source.begin(), source.size());
    if (source_text.size() > k_max_source_bytes)
        return Refused{Refusal::bad_source,
                       fmt::format("source of {} bytes, more than the {} the index takes", source_text.size(),
                                   k_max_source_bytes)};
    if (source_text.find('\0') != std::string_view::npos)
        return Refused{Refusal::bad_source, "source contains a NUL byte"};

    Entry entry{m_words.size(), frame.word_count, {}, root.getTime(), m_sources.size(), source_text.size()};
    std::memcpy(entry.id.data(), id.begin(), k_id_bytes);
    m_words.insert(m_words.end(), frame.words, frame.words + frame.word_count);
    m_sources.append(source_text);
    m_entries.push_back(entry);
    return Added{};
}

void Batch::clear() {
    m_words.clear();
    m_entries.clear();
    m_sources.clear();
}

Bytes Batch::frame_bytes(const Entry& entry) const {
    return {reinterpret_cast<const std::byte*>(m_words.data() + entry.word_offset),
            entry.word_count * sizeof(capnp::word)};
}

// ---------------------------------------------------------------------------------------
// Store

// A read transaction with the map-size lock held shared for its lifetime.
class Store::Snapshot {
public:
    explicit Snapshot(Store& store) {
        for (;;) {
            m_lock = std::shared_lock(store.m_map_mutex);
            try {
                m_txn.emplace(*store.m_env, Txn::Kind::read);
                return;
            } catch (const LmdbError& e) {
                if (e.rc() != MDB_MAP_RESIZED) throw;
            }
            m_lock.unlock();
            store.follow_resize();  // another process grew the map: adopt its size, try again
        }
    }
    const Txn& txn() const { return *m_txn; }

private:
    std::shared_lock<std::shared_mutex> m_lock;  // declared first: released after the transaction
    std::optional<Txn> m_txn;
};

Store::Store(const std::string& directory, const StoreConfig& config) : m_directory(directory), m_config(config) {
    bool writable = config.access == Access::read_write;
    bool create = writable && config.create == Create::yes;
    if (create && ::mkdir(directory.c_str(), 0755) != 0 && errno != EEXIST)
        throw Error(ExitCode::io, fmt::format("cannot create the store directory '{}': {}", directory,
                                              std::strerror(errno)));
    if (!path_exists(directory + "/data.mdb")) {
        if (!create)
            throw Error(ExitCode::io, fmt::format("no store at '{}' (no data.mdb there): "
                                                  "mh-store append --db {} creates one",
                                                  directory, directory));
    }
    EnvConfig env_config;
    env_config.access = config.access;
    env_config.sync = config.sync;
    env_config.map_bytes = writable ? std::max(std::min(config.initial_map_bytes, config.max_map_bytes), k_min_map_bytes)
                                    : 0;
    back_lock_file(directory, writable);
    try {
        m_env = std::make_unique<Env>(directory, env_config);
    } catch (const LmdbError& e) {
        auto free = free_bytes(directory);
        if (writable && (e.rc() == ENOSPC || e.rc() == EDQUOT || (e.rc() == EIO && free.value_or(0) < k_disk_slack_bytes)))
            throw StoreFull(StoreFull::Room::disk, fmt::format("the file system holding '{}' is full ({} bytes free; {}): "
                                                               "free space there", directory, free.value_or(0), e.what()));
        throw;
    }
    m_map_bytes = m_env->info().me_mapsize;

    Txn txn(*m_env, writable ? Txn::Kind::write : Txn::Kind::read);
    unsigned create_flag = create ? MDB_CREATE : 0;
    auto open = [&](const char* name, unsigned flags) {
        auto table = open_table(txn, name, flags | create_flag);
        if (!table)
            throw Error(ExitCode::io, fmt::format("'{}' is not an mh store: it has no table '{}'", directory, name));
        return *table;
    };
    m_tables.messages = open(k_messages_table, 0);
    m_tables.by_time = open(k_by_time_table, 0);
    m_tables.by_source = open(k_by_source_table, MDB_DUPSORT | MDB_DUPFIXED);
    m_tables.meta = open(k_meta_table, 0);
    auto format = txn.get(m_tables.meta, as_bytes(k_format_key));
    if (!format && create) {
        txn.put(m_tables.meta, as_bytes(k_format_key), as_bytes(k_format_value));
    } else if (!format || std::string_view(reinterpret_cast<const char*>(format->data()), format->size()) !=
                              k_format_value) {
        throw Error(ExitCode::io, fmt::format("'{}' is not an mh store of format '{}'", directory, k_format_value));
    }
    txn.commit();  // also keeps the table handles for the environment's lifetime
}

Store::~Store() = default;

void Store::follow_resize() {
    std::unique_lock held(m_map_mutex);
    m_env->set_map_bytes(0);  // adopt the size another process set
    m_map_bytes = m_env->info().me_mapsize;
}

void Store::grow_map() {
    std::unique_lock held(m_map_mutex);
    size_t current = m_env->info().me_mapsize;
    if (current >= m_config.max_map_bytes)
        throw StoreFull(StoreFull::Room::map,
                        fmt::format("the store '{}' is full: its map reached the limit of {} bytes (--max-size); "
                                    "raise --max-size, or keep less with --retain-size or --retain-age",
                                    m_directory, current));
    size_t next = std::min(current * 2, m_config.max_map_bytes);
    m_env->set_map_bytes(next);
    m_map_bytes = m_env->info().me_mapsize;
}

// When a failed write means the file system is full, the bytes still free there. LMDB
// reports a short write (the disk filled in the middle of one) as EIO, so EIO counts as
// full when there is not room for the batch twice over and some pages to spare.
std::optional<uint64_t> Store::disk_full(int rc, size_t batch_bytes) const {
    if (rc != ENOSPC && rc != EDQUOT && rc != EIO && rc != EFBIG) return std::nullopt;
    auto known = free_bytes(m_directory);
    if (!known) return rc == EIO ? std::nullopt : std::optional<uint64_t>(0);
    uint64_t free = *known;
    if (rc == EIO && free >= 2 * batch_bytes + k_disk_slack_bytes) return std::nullopt;
    return free;
}

CommitResult Store::commit(const Batch& batch) {
    CommitResult result;
    for (;;) {
        result.stored = result.duplicates = result.bytes = 0;
        try {
            std::shared_lock held(m_map_mutex);
            Txn txn(*m_env, Txn::Kind::write);
            m_source_entries.clear();
            {  // cursors close before the commit, as LMDB wants for write cursors
                Cursor messages(txn, m_tables.messages), times(txn, m_tables.by_time);
                // Ids and event times mostly arrive in order: a key after the last stored one
                // is appended (MDB_APPEND: no search, and full pages rather than split ones).
                auto last_id = last_key<MessageId>(messages);
                auto last_time = last_key<TimeKey>(times);
                for (const auto& entry : batch.entries()) {
                    Bytes frame = batch.frame_bytes(entry);
                    bool id_after = !last_id || std::memcmp(entry.id.data(), last_id->data(), k_id_bytes) > 0;
                    if (messages.put(bytes_of(entry.id), frame, id_after ? MDB_APPEND : MDB_NOOVERWRITE) ==
                        Txn::Put::exists) {
                        ++result.duplicates;
                        continue;
                    }
                    if (id_after) last_id = entry.id;
                    TimeKey key = time_key(entry.time_ns, entry.id);
                    bool time_after = !last_time || std::memcmp(key.data(), last_time->data(), key.size()) > 0;
                    times.put(bytes_of(key), {}, time_after ? MDB_APPEND : 0);
                    if (time_after) last_time = key;
                    m_source_entries.push_back({source_key(batch.source(entry)), key});
                    ++result.stored;
                    result.bytes += frame.size();
                }
                // The source index in (source, time) order: each put finds its page next to
                // the previous one's instead of descending the tree at random. Sources are
                // ranked through a hash table and the entries counting-sorted by rank, which
                // keeps each source's entries in arrival (mostly time) order: far fewer
                // string comparisons than sorting the pairs.
                SourceOrder& order = m_source_order;
                order.rank.clear();
                order.names.clear();
                order.entry_rank.clear();
                for (const auto& [source, key] : m_source_entries) {
                    auto [at, added] = order.rank.try_emplace(source, static_cast<uint32_t>(order.names.size()));
                    if (added) order.names.push_back(source);
                    order.entry_rank.push_back(at->second);
                }
                order.by_name.resize(order.names.size());
                order.position.resize(order.names.size());
                for (uint32_t i = 0; i < order.by_name.size(); ++i) order.by_name[i] = i;
                std::sort(order.by_name.begin(), order.by_name.end(),
                          [&](uint32_t a, uint32_t b) { return order.names[a] < order.names[b]; });
                order.start.assign(order.names.size() + 1, 0);
                for (uint32_t position = 0; position < order.by_name.size(); ++position)
                    order.position[order.by_name[position]] = position;
                for (uint32_t rank : order.entry_rank) ++order.start[order.position[rank] + 1];
                for (size_t i = 1; i < order.start.size(); ++i) order.start[i] += order.start[i - 1];
                order.sorted.resize(m_source_entries.size());
                for (size_t i = 0; i < m_source_entries.size(); ++i)
                    order.sorted[order.start[order.position[order.entry_rank[i]]]++] = static_cast<uint32_t>(i);
                Cursor sources(txn, m_tables.by_source);
                for (uint32_t i : order.sorted)
                    sources.put(as_bytes(m_source_entries[i].first), bytes_of(m_source_entries[i].second));
            }
            if (result.stored) {
                uint64_t total = read_u64(txn.get(m_tables.meta, as_bytes(k_bytes_key))) + result.bytes;
                txn.put(m_tables.meta, as_bytes(k_bytes_key), std::as_bytes(std::span(&total, 1)));
            }
            txn.commit();
            return result;
        } catch (const LmdbError& e) {
            // The transaction was aborted as it unwound: nothing of this batch is stored.
            if (e.rc() == MDB_MAP_FULL) {
                grow_map();
                ++result.map_growths;
            } else if (e.rc() == MDB_MAP_RESIZED) {
                follow_resize();
            } else if (auto free = disk_full(e.rc(), batch.bytes())) {
                throw StoreFull(StoreFull::Room::disk,
                                fmt::format("the file system holding '{}' is full ({} bytes free; {}): free space "
                                            "there, or keep less with --retain-size or --retain-age",
                                            m_directory, *free, e.what()));
            } else {
                throw;
            }
        }
    }
}

QueryResult Store::query(const Query& query, wire::FrameSink& sink) {
    Snapshot snapshot(*this);
    const Txn& txn = snapshot.txn();
    QueryResult result;
    std::vector<capnp::word> buffer;
    std::optional<expr::Record> record;
    expr::Scratch scratch;
    if (query.where) record.emplace(*query.symbols);
    const bool bounded = query.to_ns != std::numeric_limits<int64_t>::max();

    // Sends the message `id` on when it passes `where`; false once the query is done.
    // One cursor for the lookups: ids in time order are mostly in id order too, and LMDB
    // finds a key on the cursor's current page without descending from the root.
    Cursor messages(txn, m_tables.messages);
    auto visit = [&](const std::byte* id) {
        ++result.entries_read;
        MDB_val id_val = to_val({id, k_id_bytes}), frame_val{};
        std::optional<Bytes> value;
        if (messages.move(MDB_SET_KEY, id_val, frame_val)) value = to_bytes(frame_val);
        if (!value)
            throw Error(ExitCode::data, fmt::format("the index names message {}, which is not stored: "
                                                    "run mh-store check",
                                                    id_text(id_span(id))));
        wire::Frame frame = aligned(*value, buffer);
        if (query.where) {
            try {
                capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                                     wire::reader_options(limits_for(*value)));
                record->bind(reader.getRoot<schema::Message>(), query.now_ns);
                scratch.reset();
                if (!query.where->holds(*record, scratch)) return true;
            } catch (const kj::Exception& e) {
                throw Error(ExitCode::data, fmt::format("stored message {} is damaged ({}): run mh-store check",
                                                        id_text(id_span(id)), e.getDescription().cStr()));
            }
        }
        sink.write(frame);
        ++result.matched;
        if (query.limit && result.matched >= query.limit) return false;
        return !(query.stop && query.stop->load(std::memory_order_relaxed));
    };

    TimeKey start = time_key(query.from_ns, {});
    MDB_val key{}, value{};
    if (query.source) {
        Cursor cursor(txn, m_tables.by_source);
        std::string_view source = source_key(*query.source);
        key = to_val(as_bytes(source));
        value = to_val(bytes_of(start));
        // The first (time, id) of this source at or after `from`, then on within the source only.
        for (bool more = cursor.move(MDB_GET_BOTH_RANGE, key, value); more;
             more = cursor.move(MDB_NEXT_DUP, key, value)) {
            if (value.mv_size != k_time_key_bytes) continue;
            auto* entry = static_cast<const std::byte*>(value.mv_data);
            if (bounded && decode_time(entry) >= query.to_ns) break;
            if (!visit(entry + k_time_bytes)) break;
        }
    } else {
        Cursor cursor(txn, m_tables.by_time);
        key = to_val(bytes_of(start));
        for (bool more = cursor.move(MDB_SET_RANGE, key, value); more; more = cursor.move(MDB_NEXT, key, value)) {
            if (key.mv_size != k_time_key_bytes) continue;
            auto* entry = static_cast<const std::byte*>(key.mv_data);
            if (bounded && decode_time(entry) >= query.to_ns) break;
            if (!visit(entry + k_time_bytes)) break;
        }
    }
    return result;
}

ScanResult Store::scan_ids(const std::optional<MessageId>& after, uint64_t limit,
                           const std::function<void(const wire::Frame&)>& each) {
    Snapshot snapshot(*this);
    Cursor cursor(snapshot.txn(), m_tables.messages);
    ScanResult result;
    std::vector<capnp::word> buffer;
    MDB_val key{}, value{};
    bool more;
    if (after) {
        key = to_val(bytes_of(*after));
        more = cursor.move(MDB_SET_RANGE, key, value);
        if (more && key.mv_size == k_id_bytes && std::memcmp(key.mv_data, after->data(), k_id_bytes) == 0)
            more = cursor.move(MDB_NEXT, key, value);
    } else {
        more = cursor.move(MDB_FIRST, key, value);
    }
    for (; more && result.count < limit; more = cursor.move(MDB_NEXT, key, value)) {
        Bytes frame_bytes(static_cast<const std::byte*>(value.mv_data), value.mv_size);
        each(aligned(frame_bytes, buffer));
        MessageId id;
        std::memcpy(id.data(), key.mv_data, std::min(key.mv_size, id.size()));
        result.last = id;
        ++result.count;
    }
    return result;
}

std::optional<MessageId> Store::last_id() {
    Snapshot snapshot(*this);
    Cursor cursor(snapshot.txn(), m_tables.messages);
    MDB_val key{}, value{};
    if (!cursor.move(MDB_LAST, key, value)) return std::nullopt;
    MessageId id;
    std::memcpy(id.data(), key.mv_data, std::min(key.mv_size, id.size()));
    return id;
}

std::vector<std::string> Store::sources_matching(std::string_view pattern) {
    Snapshot snapshot(*this);
    Cursor cursor(snapshot.txn(), m_tables.by_source);
    std::vector<std::string> sources;
    size_t literal = pattern.find_first_of("*?[\\");
    MDB_val key{}, value{};
    if (literal == std::string_view::npos) {
        key = to_val(as_bytes(source_key(pattern)));
        if (cursor.move(MDB_SET, key, value)) sources.emplace_back(pattern);
        return sources;
    }
    std::string_view prefix = pattern.substr(0, literal);
    bool more;
    if (prefix.empty()) {
        more = cursor.move(MDB_FIRST, key, value);
    } else {
        key = to_val(as_bytes(prefix));
        more = cursor.move(MDB_SET_RANGE, key, value);
    }
    for (; more; more = cursor.move(MDB_NEXT_NODUP, key, value)) {
        std::string_view name = source_from_key({static_cast<const char*>(key.mv_data), key.mv_size});
        if (!name.starts_with(prefix)) break;  // keys are in byte order: past the prefix, done
        if (expr::glob_match(pattern, name)) sources.emplace_back(name);
    }
    return sources;
}

std::optional<Store::TimeRange> Store::source_time_range(std::string_view source, int64_t from_ns, int64_t to_ns) {
    Snapshot snapshot(*this);
    Cursor cursor(snapshot.txn(), m_tables.by_source);
    auto time_of = [](const MDB_val& value) {
        return value.mv_size == k_time_key_bytes ? decode_time(static_cast<const std::byte*>(value.mv_data))
                                                 : std::numeric_limits<int64_t>::min();
    };
    Bytes name = as_bytes(source_key(source));
    TimeKey from = time_key(from_ns, {});
    MDB_val key = to_val(name), value = to_val(bytes_of(from));
    if (!cursor.move(MDB_GET_BOTH_RANGE, key, value)) return std::nullopt;
    int64_t first = time_of(value);
    if (first >= to_ns) return std::nullopt;

    // The last entry before `to`: the one before the first at or after it, or the source's last.
    TimeKey to = time_key(to_ns, {});
    key = to_val(name);
    value = to_val(bytes_of(to));
    bool found;
    if (to_ns != std::numeric_limits<int64_t>::max() && cursor.move(MDB_GET_BOTH_RANGE, key, value)) {
        found = cursor.move(MDB_PREV_DUP, key, value);
    } else {
        key = to_val(name);
        found = cursor.move(MDB_SET, key, value) && cursor.move(MDB_LAST_DUP, key, value);
    }
    if (!found) return std::nullopt;
    return TimeRange{first, time_of(value)};
}

RetainResult Store::retain(const Retention& retention) {
    constexpr uint64_t k_deletes_per_txn = 10'000;  // keeps each write transaction short
    RetainResult result;
    std::vector<capnp::word> buffer;
    int64_t cutoff = retention.max_age_ns ? retention.now_ns - *retention.max_age_ns
                                          : std::numeric_limits<int64_t>::min();
    for (bool more = true; more;) {
        std::shared_lock held(m_map_mutex);
        Txn txn(*m_env, Txn::Kind::write);
        uint64_t total = read_u64(txn.get(m_tables.meta, as_bytes(k_bytes_key)));
        uint64_t deleted_here = 0;
        more = false;
        {  // the cursor closes before the transaction commits, as LMDB wants for write cursors
            Cursor oldest(txn, m_tables.by_time);
            MDB_val key{}, value{};
            while (oldest.move(MDB_FIRST, key, value)) {
                auto* time_id = static_cast<const std::byte*>(key.mv_data);
                bool too_old = decode_time(time_id) < cutoff;
                bool too_big = retention.max_bytes && total > *retention.max_bytes;
                if (!too_old && !too_big) break;
                if (deleted_here == k_deletes_per_txn) {
                    more = true;
                    break;
                }
                TimeKey entry;
                std::memcpy(entry.data(), time_id, entry.size());
                Bytes id(entry.data() + k_time_bytes, k_id_bytes);
                uint64_t frame_size = 0;
                if (auto frame = txn.get(m_tables.messages, id)) {
                    frame_size = frame->size();
                    if (auto header = read_header(*frame, buffer)) {
                        Bytes time_and_id = bytes_of(entry);
                        txn.del(m_tables.by_source, as_bytes(source_key(header->source)), &time_and_id);
                    }
                    txn.del(m_tables.messages, id);
                }
                oldest.del();
                total -= std::min(total, frame_size);
                result.bytes += frame_size;
                ++result.deleted;
                ++deleted_here;
            }
        }
        if (deleted_here) {
            txn.put(m_tables.meta, as_bytes(k_bytes_key), std::as_bytes(std::span(&total, 1)));
            txn.commit();
        }
    }
    return result;
}

uint64_t Store::message_count() {
    Snapshot snapshot(*this);
    return snapshot.txn().stat(m_tables.messages).ms_entries;
}

Stats Store::stat(size_t top_sources) {
    Snapshot snapshot(*this);
    const Txn& txn = snapshot.txn();
    Stats stats;
    stats.messages = txn.stat(m_tables.messages).ms_entries;
    stats.bytes = read_u64(txn.get(m_tables.meta, as_bytes(k_bytes_key)));
    {
        Cursor cursor(txn, m_tables.by_time);
        MDB_val key{}, value{};
        if (cursor.move(MDB_FIRST, key, value) && key.mv_size == k_time_key_bytes)
            stats.first_ns = decode_time(static_cast<const std::byte*>(key.mv_data));
        if (cursor.move(MDB_LAST, key, value) && key.mv_size == k_time_key_bytes)
            stats.last_ns = decode_time(static_cast<const std::byte*>(key.mv_data));
    }
    {
        std::vector<SourceCount> counts;
        Cursor cursor(txn, m_tables.by_source);
        MDB_val key{}, value{};
        for (bool more = cursor.move(MDB_FIRST, key, value); more; more = cursor.move(MDB_NEXT_NODUP, key, value)) {
            ++stats.sources;
            counts.push_back({std::string(source_from_key({static_cast<const char*>(key.mv_data), key.mv_size})),
                              cursor.duplicates()});
        }
        auto by_count = [](const SourceCount& a, const SourceCount& b) {
            return a.messages != b.messages ? a.messages > b.messages : a.source < b.source;
        };
        size_t keep = std::min(top_sources, counts.size());
        std::partial_sort(counts.begin(), counts.begin() + static_cast<ptrdiff_t>(keep), counts.end(), by_count);
        counts.resize(keep);
        stats.top_sources = std::move(counts);
    }
    MDB_envinfo info = m_env->info();
    stats.map_bytes = info.me_mapsize;
    stats.page_bytes = m_env->page_bytes();
    stats.used_pages = info.me_last_pgno + 1;
    return stats;
}

CheckReport Store::check(size_t max_details) {
    Snapshot snapshot(*this);
    const Txn& txn = snapshot.txn();
    CheckReport report;
    auto problem = [&](std::string text) {
        ++report.problems;
        if (report.details.size() < max_details) report.details.push_back(std::move(text));
    };
    std::vector<capnp::word> buffer;
    MDB_val key{}, value{};

    // Every message: a sound frame, stored under its own id.
    uint64_t bytes = 0;
    {
        Cursor cursor(txn, m_tables.messages);
        for (bool more = cursor.move(MDB_FIRST, key, value); more; more = cursor.move(MDB_NEXT, key, value)) {
            ++report.messages;
            Bytes id = to_bytes(key);
            Bytes frame_bytes = to_bytes(value);
            bytes += frame_bytes.size();
            if (id.size() != k_id_bytes) problem(fmt::format("a message key of {} bytes, not {}", id.size(), k_id_bytes));
            if (frame_bytes.size() % sizeof(capnp::word) != 0) {
                problem(fmt::format("message {}: {} bytes, not whole words", id_text(id), frame_bytes.size()));
                continue;
            }
            wire::Frame frame = aligned_copy(frame_bytes, buffer);
            if (auto reason = wire::check_frame(frame, limits_for(frame_bytes))) {
                problem(fmt::format("message {} does not decode: {}", id_text(id), *reason));
                continue;
            }
            auto header = read_header(frame_bytes, buffer);
            if (!header || !header->id_ok || !std::equal(id.begin(), id.end(), reinterpret_cast<const std::byte*>(header->id.data())))
                problem(fmt::format("message stored under {} carries id {}", id_text(id),
                                    header && header->id_ok ? id_text(header->id) : std::string("none")));
        }
    }

    // Every index entry names a stored message with that time (and source). Entries are
    // unique and each message has one time and source, so with equal counts the indexes
    // cover every message exactly once.
    auto check_entry = [&](const char* index, const std::byte* entry, std::optional<std::string_view> source) {
        int64_t time_ns = decode_time(entry);
        auto id = id_span(entry + k_time_bytes);
        auto stored = txn.get(m_tables.messages, {entry + k_time_bytes, k_id_bytes});
        if (!stored) {
            problem(fmt::format("{} entry for {} names no stored message", index, id_text(id)));
            return;
        }
        auto header = read_header(*stored, buffer);
        if (!header) return;  // reported above as not decoding
        if (header->time_ns != time_ns)
            problem(fmt::format("{} entry for {} has time {}, the message {}", index, id_text(id), time_ns,
                                header->time_ns));
        if (source && header->source != *source)
            problem(fmt::format("{} entry for {} has source '{}', the message '{}'", index, id_text(id), *source,
                                header->source));
    };
    uint64_t time_entries = 0, source_entries = 0;
    {
        Cursor cursor(txn, m_tables.by_time);
        for (bool more = cursor.move(MDB_FIRST, key, value); more; more = cursor.move(MDB_NEXT, key, value)) {
            ++time_entries;
            if (key.mv_size != k_time_key_bytes) {
                problem(fmt::format("by_time key of {} bytes, not {}", key.mv_size, k_time_key_bytes));
                continue;
            }
            check_entry("by_time", static_cast<const std::byte*>(key.mv_data), std::nullopt);
        }
    }
    {
        Cursor cursor(txn, m_tables.by_source);
        for (bool more = cursor.move(MDB_FIRST, key, value); more; more = cursor.move(MDB_NEXT, key, value)) {
            ++source_entries;
            std::string_view source = source_from_key({static_cast<const char*>(key.mv_data), key.mv_size});
            if (value.mv_size != k_time_key_bytes) {
                problem(fmt::format("by_source value of {} bytes, not {}", value.mv_size, k_time_key_bytes));
                continue;
            }
            check_entry("by_source", static_cast<const std::byte*>(value.mv_data), source);
        }
    }
    if (time_entries != report.messages)
        problem(fmt::format("by_time has {} entries for {} messages", time_entries, report.messages));
    if (source_entries != report.messages)
        problem(fmt::format("by_source has {} entries for {} messages", source_entries, report.messages));
    uint64_t recorded = read_u64(txn.get(m_tables.meta, as_bytes(k_bytes_key)));
    if (recorded != bytes)
        problem(fmt::format("meta records {} bytes of messages, they hold {}", recorded, bytes));
    return report;
}

}  // namespace mh::store
