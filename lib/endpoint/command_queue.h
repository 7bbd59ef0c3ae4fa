// Commands for gateways that are away, kept in LMDB so a restart of mh-endpoint loses none.
// Key: gateway id, a zero byte, an 8-byte big-endian sequence (so a gateway's commands sort in
// arrival order); value: the 8-byte expiry (wall clock ns) and the command frame.
// Beside them (table "awaited"), the commands delivered and not yet answered, so that a
// device's reply after a restart is still matched to its command. Key: gateway id, a zero
// byte, the correlation id; value: an 8-byte big-endian order (oldest first), then the
// command's name and source, each a 2-byte big-endian length and its bytes.
#pragma once

#include "store/lmdb.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mh::endpoint {

class CommandQueue {
public:
    // Opens (creating) the queue in directory `dir`; at most `max_per_gateway` wait per gateway.
    CommandQueue(const std::string& dir, size_t max_per_gateway);
    ~CommandQueue();

    using Visit = std::function<void(store::Bytes frame)>;

    // Stores a command; the older ones dropped to make room (0 or 1) are passed to `dropped`.
    // Returns how many were dropped.
    size_t push(std::string_view gateway, store::Bytes frame, int64_t expires_ns, const Visit& dropped = {});
    // Offers the gateway's commands in order: expired ones (expires_ns < now) are removed and
    // passed to `expired`; `deliver` returns false to stop (the command stays queued).
    // Returns how many were delivered.
    size_t take(std::string_view gateway, int64_t now_ns, const std::function<bool(store::Bytes)>& deliver,
                const Visit& expired);
    // Removes every gateway's expired commands, passing each to `expired`; cheap while
    // nothing can have expired (the earliest expiry is kept). Returns how many.
    size_t expire(int64_t now_ns, const Visit& expired);
    size_t size(std::string_view gateway);

    struct Awaited {
        std::string gateway, correlation_id, source, name;
        uint64_t order = 0;
    };
    void await_reply(const Awaited& command);
    void replied(std::string_view gateway, std::string_view correlation_id);
    // Every command awaited, oldest first.
    std::vector<Awaited> awaited();

private:
    std::string prefix(std::string_view gateway) const;
    // Runs `change` in the write transaction take() has open, or in one of its own
    // (committed when `change` returns true).
    void write(const std::function<bool(store::Txn&)>& change);
    std::unique_ptr<store::Env> m_env;
    MDB_dbi m_table = 0;
    MDB_dbi m_awaited = 0;
    store::Txn* m_writing = nullptr;  // take()'s transaction while it delivers
    size_t m_max;
    uint64_t m_next_seq = 1;
    int64_t m_earliest_expiry_ns = INT64_MAX;  // no stored command expires before this
};

}  // namespace mh::endpoint
