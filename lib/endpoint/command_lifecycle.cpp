// The endpoint's command lifecycle (see command_lifecycle.h).
#include "endpoint/command_lifecycle.h"

#include <fmt/format.h>

#include <algorithm>

namespace mh::endpoint {

CommandLifecycle::CommandLifecycle(wire::FrameSink& output, metrics::Registry& metrics, uint64_t seed)
    : m_output(output),
      m_ids(seed),
      m_messages_out(metrics.counter("mh_messages_out_total",
                                     "Messages written to the output: accepted ones and command statuses")),
      m_bytes_out(metrics.counter("mh_bytes_out_total", "Frame bytes written to the output")),
      m_unmatched(metrics.counter("mh_endpoint_command_replies_unmatched_total",
                                  "Replies whose correlation id is no delivered, unanswered command of the gateway")),
      m_forgotten(metrics.counter("mh_endpoint_commands_forgotten_total",
                                  "Delivered commands no longer awaited for a reply: the table was full")) {
    for (command::Status status : command::k_all_statuses)
        m_counts[static_cast<size_t>(status)] =
            &metrics.counter("mh_endpoint_command_status_total", "Command status messages written, by status",
                             fmt::format("status=\"{}\"", command::status_name(status)));
}

std::string CommandLifecycle::key(std::string_view gateway, std::string_view correlation_id) {
    std::string k(gateway);
    k.push_back('\0');
    k.append(correlation_id);
    return k;
}

void CommandLifecycle::emit(const command::Ref& ref, command::Status status, int64_t now_ns,
                            const command::StatusDetail& detail) {
    m_frame.clear();
    command::build_status(ref, status, now_ns, m_ids.next(now_ns), detail, m_frame);
    m_output.write({reinterpret_cast<const capnp::word*>(m_frame.data()), m_frame.size() / sizeof(capnp::word)});
    m_counts[static_cast<size_t>(status)]->add();
    m_messages_out.add();
    m_bytes_out.add(m_frame.size());
    m_dirty = true;
}

void CommandLifecycle::remember(const command::Ref& ref) {
    std::string k = key(ref.gateway, ref.correlation_id);
    if (auto it = m_outstanding.find(k); it != m_outstanding.end()) {
        m_outstanding_order.erase(it->second.seq);
        m_outstanding.erase(it);
    }
    while (m_outstanding.size() >= k_max_outstanding_commands && !m_outstanding_order.empty()) {
        forget(m_outstanding.find(m_outstanding_order.begin()->second));
        m_forgotten.add();
    }
    uint64_t seq = m_next_seq++;
    m_outstanding_order.emplace(seq, k);
    m_outstanding.emplace(std::move(k), Outstanding{ref, seq});
    if (m_durable) m_durable->await_reply({ref.gateway, ref.correlation_id, ref.source, ref.name, seq});
}

void CommandLifecycle::forget(OutstandingMap::iterator it) {
    if (m_durable) m_durable->replied(it->second.ref.gateway, it->second.ref.correlation_id);
    m_outstanding_order.erase(it->second.seq);
    m_outstanding.erase(it);
}

void CommandLifecycle::keep_in(CommandQueue& queue) {
    m_durable = nullptr;  // what is read back is in the queue already
    for (CommandQueue::Awaited& awaited : queue.awaited()) {
        command::Ref ref;
        ref.gateway = std::move(awaited.gateway);
        ref.correlation_id = std::move(awaited.correlation_id);
        ref.source = std::move(awaited.source);
        ref.name = std::move(awaited.name);
        m_next_seq = std::max(m_next_seq, awaited.order);  // remember() numbers after it
        remember(ref);
    }
    m_durable = &queue;
    // Those over the bound were forgotten while reading back (oldest first): the queue
    // keeps exactly what is awaited.
    std::vector<CommandQueue::Awaited> kept = queue.awaited();
    for (const CommandQueue::Awaited& awaited : kept)
        if (!m_outstanding.count(key(awaited.gateway, awaited.correlation_id)))
            queue.replied(awaited.gateway, awaited.correlation_id);
}

void CommandLifecycle::delivered(const command::Ref& ref, std::string_view protocol, int64_t now_ns) {
    remember(ref);
    command::StatusDetail detail;
    detail.protocol = protocol;
    emit(ref, command::Status::delivered, now_ns, detail);
}

uint64_t CommandLifecycle::sending(const command::Ref& ref, std::string_view protocol) {
    remember(ref);
    while (m_in_flight.size() >= k_max_commands_in_flight) m_in_flight.erase(m_in_flight.begin());
    uint64_t tag = m_next_tag++;
    m_in_flight.emplace(tag, InFlight{ref, std::string(protocol)});
    return tag;
}

void CommandLifecycle::transport_acknowledged(uint64_t tag, int64_t now_ns) {
    auto it = m_in_flight.find(tag);
    if (it == m_in_flight.end()) return;
    command::StatusDetail detail;
    detail.protocol = it->second.protocol;
    emit(it->second.ref, command::Status::delivered, now_ns, detail);
    m_in_flight.erase(it);
}

void CommandLifecycle::not_sent(uint64_t tag) { m_in_flight.erase(tag); }

void CommandLifecycle::lost(uint64_t tag, int64_t now_ns, std::string_view reason) {
    auto it = m_in_flight.find(tag);
    if (it == m_in_flight.end()) return;
    command::StatusDetail detail;
    detail.reason = reason;
    detail.protocol = it->second.protocol;
    emit(it->second.ref, command::Status::dropped, now_ns, detail);
    m_in_flight.erase(it);
}

std::optional<std::string> CommandLifecycle::reply(std::string_view gateway, std::string_view source,
                                                   schema::Message::Reader reply, int64_t now_ns) {
    command::ReplyId id = command::reply_id(reply);
    if (!id.refusal.empty()) return id.refusal;
    command::Ref ref;
    bool matched = false;
    if (auto it = m_outstanding.find(key(gateway, id.correlation_id)); it != m_outstanding.end()) {
        ref = it->second.ref;
        forget(it);
        matched = true;
    } else {
        ref.gateway = gateway;
        ref.correlation_id = id.correlation_id;
        m_unmatched.add();
    }
    if (!source.empty()) ref.source = source;
    command::StatusDetail detail;
    detail.matched = matched;
    detail.reply = reply;
    emit(ref, command::Status::acknowledged, now_ns, detail);
    return std::nullopt;
}

bool CommandLifecycle::flush() {
    if (!m_dirty) return false;
    m_output.flush();
    m_dirty = false;
    return true;
}

}  // namespace mh::endpoint
