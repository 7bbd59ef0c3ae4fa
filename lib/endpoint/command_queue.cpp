// The durable command queue (see command_queue.h).
#include "endpoint/command_queue.h"

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

}  // namespace mh::endpoint
