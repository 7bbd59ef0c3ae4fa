// The endpoint's side of the command lifecycle (lib/command): status messages written to the
// output and counted by status on --metrics; commands handed to a connection remembered
// (gateway and correlation id) until the device replies; MQTT QoS 1 deliveries remembered by
// tag until their PUBACK. Both tables are bounded: past the bound the oldest entry is
// forgotten (a late reply to it is then passed on as unmatched). With a durable command
// queue the commands awaiting a reply are kept in it too, and read back at start.
#pragma once

#include "command/command.h"
#include "endpoint/command_queue.h"
#include "message/id.h"
#include "metrics/metrics.h"
#include "wire/stream.h"

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mh::endpoint {

constexpr size_t k_max_outstanding_commands = 65536;  // delivered, awaiting a reply
constexpr size_t k_max_commands_in_flight = 65536;    // MQTT QoS 1, awaiting a PUBACK

class CommandLifecycle {
public:
    CommandLifecycle(wire::FrameSink& output, metrics::Registry& metrics, uint64_t seed);

    void emit(const command::Ref& ref, command::Status status, int64_t now_ns,
              const command::StatusDetail& detail = {});
    // Written to a connection (native, MQTT QoS 0, HTTPS fetch): delivered now, and
    // remembered for its reply.
    void delivered(const command::Ref& ref, std::string_view protocol, int64_t now_ns);
    // An MQTT QoS 1 delivery: remembered for its reply now, delivered at its PUBACK, for
    // which the returned tag stands.
    uint64_t sending(const command::Ref& ref, std::string_view protocol);
    void transport_acknowledged(uint64_t tag, int64_t now_ns);
    void not_sent(uint64_t tag);
    // Sent, and the session ended before the PUBACK with nothing to send it again: dropped.
    void lost(uint64_t tag, int64_t now_ns, std::string_view reason);
    // A device's reply through `gateway`: an acknowledged status (matched or not). Returns
    // why it was refused (no usable correlation_id), or nullopt.
    std::optional<std::string> reply(std::string_view gateway, std::string_view source,
                                     schema::Message::Reader reply, int64_t now_ns);

    // Keeps the commands awaiting a reply in `queue` from now on, after reading back those
    // it kept before (a restart).
    void keep_in(CommandQueue& queue);

    IdGenerator& ids() { return m_ids; }
    // Flushes the output when a status was written since the last flush.
    bool flush();

private:
    void remember(const command::Ref& ref);
    static std::string key(std::string_view gateway, std::string_view correlation_id);

    struct Outstanding {
        command::Ref ref;
        uint64_t seq;
    };
    struct InFlight {
        command::Ref ref;
        std::string protocol;
    };
    wire::FrameSink& m_output;
    IdGenerator m_ids;
    std::vector<std::byte> m_frame;
    std::array<metrics::Counter*, std::size(command::k_all_statuses)> m_counts{};
    // The endpoint's output counters: statuses are messages it writes, so mh-route's
    // accounting (a reader takes in what its upstream sent) holds.
    metrics::Counter& m_messages_out;
    metrics::Counter& m_bytes_out;
    metrics::Counter& m_unmatched;
    metrics::Counter& m_forgotten;
    using OutstandingMap = std::unordered_map<std::string, Outstanding>;
    // Stops awaiting a reply to it (answered, or the table is full).
    void forget(OutstandingMap::iterator it);
    OutstandingMap m_outstanding;                                // key(gateway, correlation id)
    std::map<uint64_t, std::string> m_outstanding_order;         // seq -> key, oldest first
    std::map<uint64_t, InFlight> m_in_flight;                    // tag -> command, oldest first
    uint64_t m_next_tag = 1;
    uint64_t m_next_seq = 1;
    bool m_dirty = false;
    CommandQueue* m_durable = nullptr;
};

}  // namespace mh::endpoint
