#include "endpoint/mqtt_gateway.h"

#include "wire/frame.h"

#include <capnp/serialize.h>
#include <fmt/format.h>

#include <algorithm>

namespace mh::endpoint {

namespace {
mqtt::SessionOptions session_options(const Connection& connection, int64_t connect_timeout_ns) {
    mqtt::SessionOptions options;
    // A PUBLISH is its topic and payload: room for the largest message and a long topic.
    options.max_packet_bytes = connection.max_message_bytes() + 1024;
    options.connect_timeout = std::chrono::milliseconds(connect_timeout_ns / 1'000'000);
    return options;
}

std::string_view reason_of(mqtt::CloseCause cause) {
    switch (cause) {
        case mqtt::CloseCause::protocol_error:
        case mqtt::CloseCause::unsupported_version:
        case mqtt::CloseCause::identifier_rejected:
        case mqtt::CloseCause::too_many_pending: return reason::protocol;
        case mqtt::CloseCause::too_large: return reason::oversized;
        case mqtt::CloseCause::connect_timeout: return reason::handshake_timeout;
        case mqtt::CloseCause::keep_alive_timeout: return reason::idle_timeout;
        default: return {};  // counted where they happened, or no refusal at all
    }
}
}  // namespace

MqttGatewaySession::MqttGatewaySession(Connection& connection, int64_t connect_timeout_ns)
    : m_connection(connection),
      m_session(*this, session_options(connection, connect_timeout_ns), mqtt::Clock::now()) {}

MqttGatewaySession::~MqttGatewaySession() {
    // A clean session ends with its QoS 1 commands: those not acknowledged are gone.
    if (!m_persistent)
        for (uint64_t tag : m_in_flight)
            m_connection.command_lost(tag, "the MQTT session ended before the PUBACK (clean session)");
    if (!m_slot_key.empty() && m_connection.gateway()) {
        auto& slots = m_connection.gateway()->mqtt_sessions;
        auto it = slots.find(m_slot_key);
        if (it != slots.end() && it->second.owner == this) it->second.owner = nullptr;
    }
}

void MqttGatewaySession::pump() {
    std::string_view out = m_session.output();
    if (!out.empty()) {
        m_connection.send(out);
        m_session.consume_output(out.size());
    }
    if (m_session.closed() && !m_closed) {
        m_closed = true;
        auto cause = m_session.close_cause();
        std::string_view why = reason_of(cause);
        if (!why.empty()) {
            std::string detail = mqtt::describe(cause);
            if (auto error = m_session.parse_error()) detail += fmt::format(" ({})", static_cast<int>(*error));
            m_connection.refuse(why, fmt::format("MQTT from {}: {}", m_connection.peer(), detail));
        }
        m_connection.close(mqtt::describe(cause));
    }
}

size_t MqttGatewaySession::receive(std::span<const std::byte> data) {
    m_session.receive(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()), mqtt::Clock::now());
    pump();
    return data.size();
}

void MqttGatewaySession::flushed() {
    for (uint16_t id : m_to_acknowledge) m_session.acknowledge(id);
    m_to_acknowledge.clear();
    pump();
}

void MqttGatewaySession::tick(int64_t) {
    auto now = mqtt::Clock::now();
    if (now >= m_session.deadline()) m_session.tick(now);
    pump();
}

void MqttGatewaySession::take_over() {
    m_session.close(mqtt::CloseCause::taken_over);
    m_slot_key.clear();
    pump();
}

mqtt::ConnectDecision MqttGatewaySession::authenticate(const mqtt::ConnectRequest& request) {
    mqtt::ConnectDecision decision;
    if (GatewayState* proven = m_connection.gateway()) {
        if (request.username && *request.username != proven->id) {
            m_connection.refuse(reason::auth, fmt::format("MQTT user name '{}' with the certificate of {}",
                                                          *request.username, proven->id));
            decision.code = mqtt::ConnectCode::not_authorized;
            return decision;
        }
    } else if (!request.username || !request.password) {
        m_connection.refuse(reason::auth, fmt::format("{}: MQTT CONNECT without user name and password (or a "
                                                      "client certificate)", m_connection.peer()));
        decision.code = mqtt::ConnectCode::not_authorized;
        return decision;
    } else if (!m_connection.login_token(*request.username, *request.password)) {
        decision.code = mqtt::ConnectCode::bad_username_or_password;
        return decision;
    }
    if (!request.clean_session) {
        auto& slot = m_connection.gateway()->mqtt_sessions[std::string(request.client_id)];
        if (slot.owner && slot.owner != this) slot.owner->take_over();
        if (!slot.state) slot.state = std::make_shared<mqtt::SessionState>();
        slot.owner = this;
        m_slot_key = request.client_id;
        decision.state = slot.state;
        m_persistent = true;
    } else {
        m_connection.gateway()->mqtt_sessions.erase(std::string(request.client_id));
    }
    return decision;
}

void MqttGatewaySession::on_connected(bool) { m_connection.take_queued_commands(); }

mqtt::PublishOutcome MqttGatewaySession::on_publish(const mqtt::Publish& publish) {
    if (!publish.topic.starts_with(k_telemetry_prefix) || publish.topic.size() == k_telemetry_prefix.size()) {
        if (publish.topic.starts_with(k_replies_prefix)) return on_reply(publish);
        m_connection.refuse(reason::source, fmt::format("MQTT topic '{}' is not telemetry/<source>", publish.topic));
        return mqtt::PublishOutcome::dropped;
    }
    std::string_view source = publish.topic.substr(k_telemetry_prefix.size());
    // Telemetry PUBACKs may wait for a batch; a reply's goes out with the next flush.
    return outcome(m_connection.ingest_json(publish.payload, {source, "telemetry"}), publish, true);
}

// What the MQTT session does with a PUBLISH the endpoint judged: QoS 1 is acknowledged once
// the message is in the output (after the flush), refusals as their kind asks.
mqtt::PublishOutcome MqttGatewaySession::outcome(Verdict verdict, const mqtt::Publish& publish, bool batch_ack) {
    switch (verdict) {
        case Verdict::accepted:
            if (publish.qos == mqtt::QoS::at_most_once) return mqtt::PublishOutcome::accepted;
            m_to_acknowledge.push_back(publish.packet_id);
            m_connection.notify_when_flushed(batch_ack);
            return mqtt::PublishOutcome::deferred;
        case Verdict::quota: return mqtt::PublishOutcome::over_quota;
        case Verdict::oversized: return mqtt::PublishOutcome::refused;
        case Verdict::source:
        case Verdict::malformed: return mqtt::PublishOutcome::dropped;
    }
    return mqtt::PublishOutcome::dropped;
}

mqtt::PublishOutcome MqttGatewaySession::on_reply(const mqtt::Publish& publish) {
    std::string_view rest = publish.topic.substr(k_replies_prefix.size());
    const std::string& own = m_connection.gateway()->id;
    bool ok = rest.starts_with(own) && (rest.size() == own.size() || rest[own.size()] == '/');
    std::string_view source = ok && rest.size() > own.size() ? rest.substr(own.size() + 1) : std::string_view();
    if (!ok || (rest.size() > own.size() && source.empty())) {
        m_connection.refuse(reason::source, fmt::format("MQTT reply topic '{}' (only replies/{}[/<source>])",
                                                        publish.topic, own));
        return mqtt::PublishOutcome::dropped;
    }
    return outcome(m_connection.reply_json(publish.payload, source), publish, false);
}

std::optional<mqtt::QoS> MqttGatewaySession::may_subscribe(std::string_view filter, mqtt::QoS requested) {
    std::string own = fmt::format("{}{}", k_commands_prefix, m_connection.gateway()->id);
    bool ok = filter.starts_with(own) && (filter.size() == own.size() || filter[own.size()] == '/');
    if (!ok) {
        m_connection.refuse(reason::auth, fmt::format("MQTT subscription to '{}' (only {} and below)", filter, own));
        return std::nullopt;
    }
    return requested == mqtt::QoS::at_most_once ? mqtt::QoS::at_most_once : mqtt::QoS::at_least_once;
}

void MqttGatewaySession::on_subscribed(std::string_view, mqtt::QoS) { m_connection.take_queued_commands(); }

void MqttGatewaySession::on_delivered(uint64_t tag) {
    if (auto it = std::find(m_in_flight.begin(), m_in_flight.end(), tag); it != m_in_flight.end()) m_in_flight.erase(it);
    m_connection.command_transport_acknowledged(tag);
}

bool MqttGatewaySession::deliver(const wire::Frame& frame, const command::Ref& ref) {
    if (m_closed || m_session.state() != mqtt::ServerSession::State::connected) return false;
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
    auto command = reader.getRoot<schema::Message>();
    std::string topic = fmt::format("{}{}", k_commands_prefix, m_connection.gateway()->id);
    if (command.hasSource() && command.getSource().size() > 0) topic += fmt::format("/{}", command.getSource().cStr());
    m_payload.clear();
    m_encoder.encode(command, m_payload);
    if (!m_payload.empty() && m_payload.back() == '\n') m_payload.pop_back();
    // QoS 1: delivered at the PUBACK; QoS 0 (the subscription's): delivered once written.
    const mqtt::SessionState& state = m_session.session_state();
    size_t held = state.inflight_count() + state.queued_count();
    uint64_t tag = m_connection.command_sending(ref);
    auto result = m_session.deliver(topic, m_payload, mqtt::QoS::at_least_once, tag);
    if (result != mqtt::DeliverResult::sent && result != mqtt::DeliverResult::queued) {
        m_connection.command_not_sent(tag);
        return false;
    }
    if (state.inflight_count() + state.queued_count() == held) m_connection.command_transport_acknowledged(tag);
    else if (!m_persistent) m_in_flight.push_back(tag);
    pump();
    return true;
}

}  // namespace mh::endpoint
