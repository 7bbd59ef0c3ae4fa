#include "store/lmdb.h"

#include <fmt/format.h>

namespace mh::store {

namespace {
std::string describe(const char* call, int rc, const std::string& context) {
    std::string text = fmt::format("{} failed: {}", call, mdb_strerror(rc));
    if (!context.empty()) text += fmt::format(" ({})", context);
    return text;
}
}  // namespace

LmdbError::LmdbError(const char* call, int rc, const std::string& context)
    : Error(ExitCode::io, describe(call, rc, context)), m_rc(rc) {}

void check_rc(int rc, const char* call, std::string_view context) {
    if (rc != MDB_SUCCESS) throw LmdbError(call, rc, std::string(context));
}

Env::Env(const std::string& path, const EnvConfig& config) : m_path(path) {
    check_rc(mdb_env_create(&m_env), "mdb_env_create", path);
    try {
        check_rc(mdb_env_set_maxdbs(m_env, config.max_tables), "mdb_env_set_maxdbs", path);
        if (config.map_bytes) check_rc(mdb_env_set_mapsize(m_env, config.map_bytes), "mdb_env_set_mapsize", path);
        // NOTLS: a read transaction belongs to its object, not to the thread, so one thread
        // may hold several and readers may run beside a writer of the same process.
        unsigned flags = MDB_NOTLS;
        if (config.access == Access::read_only) flags |= MDB_RDONLY;
        if (config.sync == Sync::none) flags |= MDB_NOSYNC;
        check_rc(mdb_env_open(m_env, path.c_str(), flags, 0644), "mdb_env_open", path);
        check_rc(mdb_reader_check(m_env, &m_stale_readers), "mdb_reader_check", path);
    } catch (...) {
        mdb_env_close(m_env);
        throw;
    }
}

Env::~Env() { mdb_env_close(m_env); }

MDB_envinfo Env::info() const {
    MDB_envinfo info{};
    check_rc(mdb_env_info(m_env, &info), "mdb_env_info", m_path);
    return info;
}

size_t Env::page_bytes() const {
    MDB_stat stat{};
    check_rc(mdb_env_stat(m_env, &stat), "mdb_env_stat", m_path);
    return stat.ms_psize;
}

void Env::set_map_bytes(size_t bytes) { check_rc(mdb_env_set_mapsize(m_env, bytes), "mdb_env_set_mapsize", m_path); }

Txn::Txn(Env& env, Kind kind) {
    check_rc(mdb_txn_begin(env.get(), nullptr, kind == Kind::read ? MDB_RDONLY : 0, &m_txn), "mdb_txn_begin",
             env.path());
}

void Txn::commit() {
    MDB_txn* txn = m_txn;
    m_txn = nullptr;  // committed or not, the handle is gone (mdb_txn_commit frees it)
    check_rc(mdb_txn_commit(txn), "mdb_txn_commit");
}

void Txn::abort() noexcept {
    if (m_txn) mdb_txn_abort(m_txn);
    m_txn = nullptr;
}

std::optional<Bytes> Txn::get(MDB_dbi table, Bytes key) const {
    MDB_val k = to_val(key), v{};
    int rc = mdb_get(m_txn, table, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check_rc(rc, "mdb_get");
    return to_bytes(v);
}

Txn::Put Txn::put(MDB_dbi table, Bytes key, Bytes value, unsigned flags) {
    MDB_val k = to_val(key), v = to_val(value);
    int rc = mdb_put(m_txn, table, &k, &v, flags);
    if (rc == MDB_KEYEXIST) return Put::exists;
    check_rc(rc, "mdb_put");
    return Put::stored;
}

bool Txn::del(MDB_dbi table, Bytes key, const Bytes* value) {
    MDB_val k = to_val(key), v{};
    if (value) v = to_val(*value);
    int rc = mdb_del(m_txn, table, &k, value ? &v : nullptr);
    if (rc == MDB_NOTFOUND) return false;
    check_rc(rc, "mdb_del");
    return true;
}

MDB_stat Txn::stat(MDB_dbi table) const {
    MDB_stat stat{};
    check_rc(mdb_stat(m_txn, table, &stat), "mdb_stat");
    return stat;
}

std::optional<MDB_dbi> open_table(Txn& txn, const char* name, unsigned flags) {
    MDB_dbi dbi = 0;
    int rc = mdb_dbi_open(txn.get(), name, flags, &dbi);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check_rc(rc, "mdb_dbi_open", name);
    return dbi;
}

Cursor::Cursor(const Txn& txn, MDB_dbi table) {
    check_rc(mdb_cursor_open(txn.get(), table, &m_cursor), "mdb_cursor_open");
}

Cursor::~Cursor() { mdb_cursor_close(m_cursor); }

bool Cursor::move(MDB_cursor_op op, MDB_val& key, MDB_val& value) {
    int rc = mdb_cursor_get(m_cursor, &key, &value, op);
    if (rc == MDB_NOTFOUND) return false;
    check_rc(rc, "mdb_cursor_get");
    return true;
}

size_t Cursor::duplicates() const {
    size_t count = 0;
    check_rc(mdb_cursor_count(m_cursor, &count), "mdb_cursor_count");
    return count;
}

void Cursor::del() { check_rc(mdb_cursor_del(m_cursor, 0), "mdb_cursor_del"); }

Txn::Put Cursor::put(Bytes key, Bytes value, unsigned flags) {
    MDB_val k = to_val(key), v = to_val(value);
    int rc = mdb_cursor_put(m_cursor, &k, &v, flags);
    if (rc == MDB_KEYEXIST) return Txn::Put::exists;
    check_rc(rc, "mdb_cursor_put");
    return Txn::Put::stored;
}

}  // namespace mh::store
