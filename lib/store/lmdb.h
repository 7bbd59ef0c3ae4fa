// A thin RAII layer over liblmdb: an environment, transactions that abort unless
// committed, cursors, and the one place where an LMDB return code becomes an error.
// "Not found" is a result (std::optional), never an exception.
#pragma once

#include "core/error.h"

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mh::store {

// An LMDB call failed. code() is the exit code the tool ends with (74: the store cannot be
// read or written), rc() LMDB's own code (MDB_MAP_FULL, ENOSPC, ...).
class LmdbError : public Error {
public:
    LmdbError(const char* call, int rc, const std::string& context);
    int rc() const { return m_rc; }

private:
    int m_rc;
};

// Throws LmdbError for anything but MDB_SUCCESS; `context` (a path, a table) goes in the text.
void check_rc(int rc, const char* call, std::string_view context = {});

using Bytes = std::span<const std::byte>;

inline MDB_val to_val(Bytes bytes) { return {bytes.size(), const_cast<std::byte*>(bytes.data())}; }
inline Bytes to_bytes(const MDB_val& val) { return {static_cast<const std::byte*>(val.mv_data), val.mv_size}; }
inline Bytes as_bytes(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }

enum class Access { read_only, read_write };
enum class Sync { commit, none };  // fsync per commit, or leave writing back to the OS

struct EnvConfig {
    Access access = Access::read_only;
    Sync sync = Sync::commit;
    size_t map_bytes = 0;  // 0: LMDB's default, or the size the file already has
    unsigned max_tables = 8;
};

class Env {
public:
    // Opens the environment in directory `path` (which must exist) and clears reader
    // slots left behind by processes that died (mdb_reader_check).
    Env(const std::string& path, const EnvConfig& config);
    ~Env();
    Env(const Env&) = delete;
    Env& operator=(const Env&) = delete;

    MDB_env* get() const { return m_env; }
    const std::string& path() const { return m_path; }
    int stale_readers_cleared() const { return m_stale_readers; }

    MDB_envinfo info() const;
    size_t page_bytes() const;
    // No transaction of this process may be active (mdb_env_set_mapsize's rule).
    void set_map_bytes(size_t bytes);

private:
    MDB_env* m_env = nullptr;
    std::string m_path;
    int m_stale_readers = 0;
};

class Txn {
public:
    enum class Kind { read, write };
    // A write transaction waits for any other writer (of any process) to finish.
    // Throws LmdbError; MDB_MAP_RESIZED is reported as such for the caller to handle.
    Txn(Env& env, Kind kind);
    ~Txn() { abort(); }
    Txn(Txn&& other) noexcept : m_txn(other.m_txn) { other.m_txn = nullptr; }
    Txn& operator=(const Txn&) = delete;

    MDB_txn* get() const { return m_txn; }
    void commit();
    void abort() noexcept;

    std::optional<Bytes> get(MDB_dbi table, Bytes key) const;
    enum class Put { stored, exists };
    // With `flags` MDB_NOOVERWRITE or MDB_NODUPDATA, an existing key (or pair) is `exists`.
    Put put(MDB_dbi table, Bytes key, Bytes value, unsigned flags = 0);
    bool del(MDB_dbi table, Bytes key, const Bytes* value = nullptr);  // false when absent
    MDB_stat stat(MDB_dbi table) const;

private:
    MDB_txn* m_txn = nullptr;
};

// Opens (or with create, creates) a named table; `flags` as mdb_dbi_open's (MDB_DUPSORT ...).
// Returns nullopt when it does not exist and may not be created.
std::optional<MDB_dbi> open_table(Txn& txn, const char* name, unsigned flags);

class Cursor {
public:
    Cursor(const Txn& txn, MDB_dbi table);
    ~Cursor();
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;

    // Positions the cursor (MDB_FIRST, MDB_SET_RANGE, MDB_NEXT, MDB_NEXT_DUP, ...); `key`
    // and `value` are inputs for the ops that take them and hold the entry afterwards.
    // False at the end (MDB_NOTFOUND).
    bool move(MDB_cursor_op op, MDB_val& key, MDB_val& value);
    bool move(MDB_cursor_op op) {
        MDB_val key{}, value{};
        return move(op, key, value);
    }
    size_t duplicates() const;  // values under the current key of a DUPSORT table
    void del();                 // the entry under the cursor
    // Stores at the cursor (mdb_cursor_put): MDB_APPEND skips the search when the key sorts
    // after every other; with MDB_NOOVERWRITE or MDB_APPEND a key not after the last is `exists`.
    Txn::Put put(Bytes key, Bytes value, unsigned flags = 0);

private:
    MDB_cursor* m_cursor = nullptr;
};

}  // namespace mh::store
