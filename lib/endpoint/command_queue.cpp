// The durable command queue (see command_queue.h).
#include "endpoint/command_queue.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

namespace mh::endpoint {

namespace {
void put_be64(std::string& out, uint64_t v) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}
uint64_t get_be64(const std::byte* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
    return v;
}
bool starts_with(const MDB_val& key, const std::string& prefix) {
    return key.mv_size >= prefix.size() && std::memcmp(key.mv_data, prefix.data(), prefix.size()) == 0;
}
}  // namespace

CommandQueue::CommandQueue(const std::string& dir, size_t max_per_gateway) : m_max(max_per_gateway) {
    std::filesystem::create_directories(dir);
    store::EnvConfig config;
    config.access = store::Access::read_write;
    config.map_bytes = size_t(1) << 30;
    m_env = std::make_unique<store::Env>(dir, config);
    store::Txn txn(*m_env, store::Txn::Kind::write);
    m_table = *store::open_table(txn, "commands", MDB_CREATE);
    m_awaited = *store::open_table(txn, "awaited", MDB_CREATE);
    // The next sequence continues after the highest stored one (of any gateway).
    store::Cursor cursor(txn, m_table);
    MDB_val key{}, value{};
    for (bool ok = cursor.move(MDB_FIRST, key, value); ok; ok = cursor.move(MDB_NEXT, key, value)) {
        if (key.mv_size >= 8)
            m_next_seq = std::max(m_next_seq, get_be64(static_cast<const std::byte*>(key.mv_data) + key.mv_size - 8) + 1);
        if (value.mv_size >= 8)
            m_earliest_expiry_ns = std::min(m_earliest_expiry_ns,
                                            static_cast<int64_t>(get_be64(static_cast<const std::byte*>(value.mv_data))));
    }
    txn.commit();
}

CommandQueue::~CommandQueue() = default;

std::string CommandQueue::prefix(std::string_view gateway) const {
    std::string p(gateway);
    p.push_back('\0');
    return p;
}

size_t CommandQueue::size(std::string_view gateway) {
    store::Txn txn(*m_env, store::Txn::Kind::read);
    std::string p = prefix(gateway);
    store::Cursor cursor(txn, m_table);
    MDB_val key{p.size(), p.data()}, value{};
    size_t n = 0;
    for (bool ok = cursor.move(MDB_SET_RANGE, key, value); ok && starts_with(key, p);
         ok = cursor.move(MDB_NEXT, key, value))
        ++n;
    return n;
}

size_t CommandQueue::push(std::string_view gateway, store::Bytes frame, int64_t expires_ns, const Visit& dropped_one) {
    size_t dropped = 0;
    std::string p = prefix(gateway);
    store::Txn txn(*m_env, store::Txn::Kind::write);
    {
        store::Cursor cursor(txn, m_table);
        MDB_val key{p.size(), p.data()}, value{};
        size_t n = 0;
        for (bool ok = cursor.move(MDB_SET_RANGE, key, value); ok && starts_with(key, p);
             ok = cursor.move(MDB_NEXT, key, value))
            ++n;
        // Drop the oldest until there is room for one more.
        while (n >= m_max && n > 0) {
            MDB_val k{p.size(), p.data()}, v{};
            if (!cursor.move(MDB_SET_RANGE, k, v) || !starts_with(k, p)) break;
            if (dropped_one && v.mv_size > 8) {
                // Copied: the frame must be word aligned.
                auto* data = static_cast<const std::byte*>(v.mv_data);
                std::vector<std::byte> old(data + 8, data + v.mv_size);
                dropped_one(old);
            }
            cursor.del();
            --n;
            ++dropped;
        }
    }
    std::string key = p;
    put_be64(key, m_next_seq++);
    std::string value;
    put_be64(value, static_cast<uint64_t>(expires_ns));
    value.append(reinterpret_cast<const char*>(frame.data()), frame.size());
    txn.put(m_table, store::as_bytes(key), store::as_bytes(value));
    txn.commit();
    m_earliest_expiry_ns = std::min(m_earliest_expiry_ns, expires_ns);
    return dropped;
}

size_t CommandQueue::take(std::string_view gateway, int64_t now_ns, const std::function<bool(store::Bytes)>& deliver,
                          const Visit& expired) {
    std::string p = prefix(gateway);
    size_t delivered = 0;
    store::Txn txn(*m_env, store::Txn::Kind::write);
    // A delivery remembers its command as awaited: in this transaction (LMDB has one writer,
    // and a second write transaction on this thread would wait for this one forever).
    m_writing = &txn;
    struct Done {
        store::Txn*& writing;
        ~Done() { writing = nullptr; }
    } done{m_writing};
    {
        store::Cursor cursor(txn, m_table);
        MDB_val key{p.size(), p.data()}, value{};
        for (bool ok = cursor.move(MDB_SET_RANGE, key, value); ok && starts_with(key, p);) {
            if (value.mv_size < 8) {
                cursor.del();
            } else {
                auto* data = static_cast<const std::byte*>(value.mv_data);
                int64_t expires = static_cast<int64_t>(get_be64(data));
                if (expires < now_ns) {
                    if (expired && value.mv_size > 8) {
                        std::vector<std::byte> frame(data + 8, data + value.mv_size);
                        expired(frame);
                    }
                    cursor.del();
                } else {
                    // Copied: the frame must be word aligned and outlive the cursor move.
                    std::vector<std::byte> frame(data + 8, data + value.mv_size);
                    if (!deliver(frame)) break;
                    ++delivered;
                    cursor.del();
                }
            }
            // Every entry looked at was deleted: the next is again the first under the prefix.
            key = MDB_val{p.size(), p.data()};
            ok = cursor.move(MDB_SET_RANGE, key, value) && starts_with(key, p);
        }
    }
    txn.commit();
    return delivered;
}

size_t CommandQueue::expire(int64_t now_ns, const Visit& expired) {
    if (now_ns <= m_earliest_expiry_ns) return 0;
    size_t count = 0;
    int64_t earliest = INT64_MAX;
    store::Txn txn(*m_env, store::Txn::Kind::write);
    {
        store::Cursor cursor(txn, m_table);
        MDB_val key{}, value{};
        for (bool ok = cursor.move(MDB_FIRST, key, value); ok; ok = cursor.move(MDB_NEXT, key, value)) {
            if (value.mv_size < 8) continue;
            auto* data = static_cast<const std::byte*>(value.mv_data);
            int64_t expires = static_cast<int64_t>(get_be64(data));
            if (expires >= now_ns) {
                earliest = std::min(earliest, expires);
                continue;
            }
            if (expired && value.mv_size > 8) {
                std::vector<std::byte> frame(data + 8, data + value.mv_size);
                expired(frame);
            }
            ++count;
            cursor.del();
        }
    }
    txn.commit();
    m_earliest_expiry_ns = earliest;
    return count;
}

namespace {
std::string awaited_key(std::string_view gateway, std::string_view correlation_id) {
    std::string key(gateway);
    key.push_back('\0');
    key.append(correlation_id);
    return key;
}
void put_text(std::string& out, std::string_view text) {
    size_t size = std::min<size_t>(text.size(), UINT16_MAX);
    out.push_back(static_cast<char>(size >> 8));
    out.push_back(static_cast<char>(size & 0xff));
    out.append(text.substr(0, size));
}
bool get_text(std::string_view& in, std::string& out) {
    if (in.size() < 2) return false;
    size_t size = static_cast<size_t>(static_cast<uint8_t>(in[0])) << 8 | static_cast<uint8_t>(in[1]);
    if (in.size() < 2 + size) return false;
    out.assign(in.substr(2, size));
    in.remove_prefix(2 + size);
    return true;
}
}  // namespace

void CommandQueue::await_reply(const Awaited& command) {
    std::string value;
    put_be64(value, command.order);
    put_text(value, command.name);
    put_text(value, command.source);
    std::string key = awaited_key(command.gateway, command.correlation_id);
    write([&](store::Txn& txn) {
        txn.put(m_awaited, store::as_bytes(key), store::as_bytes(value));
        return true;
    });
}

void CommandQueue::replied(std::string_view gateway, std::string_view correlation_id) {
    std::string key = awaited_key(gateway, correlation_id);
    write([&](store::Txn& txn) { return txn.del(m_awaited, store::as_bytes(key)); });
}

void CommandQueue::write(const std::function<bool(store::Txn&)>& change) {
    if (m_writing) {
        change(*m_writing);  // committed with the delivery that made it
        return;
    }
    store::Txn txn(*m_env, store::Txn::Kind::write);
    if (change(txn)) txn.commit();
}

std::vector<CommandQueue::Awaited> CommandQueue::awaited() {
    std::vector<Awaited> out;
    store::Txn txn(*m_env, store::Txn::Kind::read);
    store::Cursor cursor(txn, m_awaited);
    MDB_val key{}, value{};
    for (bool ok = cursor.move(MDB_FIRST, key, value); ok; ok = cursor.move(MDB_NEXT, key, value)) {
        std::string_view k(static_cast<const char*>(key.mv_data), key.mv_size);
        std::string_view v(static_cast<const char*>(value.mv_data), value.mv_size);
        size_t zero = k.find('\0');
        if (zero == std::string_view::npos || v.size() < 8) continue;  // not ours: skipped
        Awaited command;
        command.gateway = k.substr(0, zero);
        command.correlation_id = k.substr(zero + 1);
        command.order = get_be64(reinterpret_cast<const std::byte*>(v.data()));
        v.remove_prefix(8);
        if (!get_text(v, command.name) || !get_text(v, command.source)) continue;
        out.push_back(std::move(command));
    }
    std::sort(out.begin(), out.end(), [](const Awaited& a, const Awaited& b) { return a.order < b.order; });
    return out;
}

}  // namespace mh::endpoint
