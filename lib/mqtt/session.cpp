#include "mqtt/session.h"

#include "mqtt/topic.h"

#include <algorithm>
#include <cassert>

namespace mh::mqtt {

const char* describe(CloseCause cause) {
    switch (cause) {
        case CloseCause::none: return "open";
        case CloseCause::client_disconnect: return "client disconnected";
        case CloseCause::connection_lost: return "connection lost";
        case CloseCause::protocol_error: return "protocol error";
        case CloseCause::too_large: return "packet too large";
        case CloseCause::unsupported_version: return "unsupported protocol version";
        case CloseCause::identifier_rejected: return "client identifier rejected";
        case CloseCause::auth_failed: return "authentication failed";
        case CloseCause::connect_timeout: return "no CONNECT in time";
        case CloseCause::keep_alive_timeout: return "keep-alive timeout";
        case CloseCause::publish_refused: return "publish refused";
        case CloseCause::over_quota: return "over quota";
        case CloseCause::too_many_pending: return "too many unacknowledged publishes";
        case CloseCause::server_close: return "closed by the server";
        case CloseCause::taken_over: return "taken over by a newer connection";
    }
    return "closed";
}

ServerSession::ServerSession(SessionHandler& handler, SessionOptions options, TimePoint now)
    : m_handler(handler),
      m_options(options),
      m_reader(std::min(options.max_connect_bytes, options.max_packet_bytes)),
      m_started(now),
      m_last_packet(now),
      m_session(std::make_shared<SessionState>()) {}

void ServerSession::receive(std::string_view bytes, TimePoint now) {
    if (closed()) return;
    m_reader.feed(bytes);
    while (!closed()) {
        ReadStatus status = m_reader.next(m_packet);
        if (status == ReadStatus::need_more) return;
        if (status == ReadStatus::error) {
            ParseError error = *m_reader.error();
            if (error == ParseError::unsupported_protocol_level && m_state == State::awaiting_connect)
                return refuse_connect(ConnectCode::unacceptable_protocol_version,
                                      CloseCause::unsupported_version);
            return fail(error == ParseError::too_large ? CloseCause::too_large
                                                       : CloseCause::protocol_error,
                        error);
        }
        m_last_packet = now;
        handle(m_packet);
    }
}

void ServerSession::consume_output(size_t bytes) {
    assert(bytes <= m_output.size() - m_output_start);
    m_output_start += bytes;
    if (m_output_start == m_output.size()) {
        m_output.clear();
        m_output_start = 0;
        if (m_output.capacity() > k_idle_buffer_bytes) m_output.shrink_to_fit();
    } else if (m_output_start > 64 * 1024 && m_output_start > m_output.size() / 2) {
        m_output.erase(0, m_output_start);
        m_output_start = 0;
    }
}

std::chrono::milliseconds ServerSession::keep_alive_timeout() const {
    return std::chrono::milliseconds(m_keep_alive_s * 1500);
}

TimePoint ServerSession::deadline() const {
    switch (m_state) {
        case State::awaiting_connect: return m_started + m_options.connect_timeout;
        case State::connected:
            return m_keep_alive_s ? m_last_packet + keep_alive_timeout() : TimePoint::max();
        case State::closed: return TimePoint::max();
    }
    return TimePoint::max();
}

void ServerSession::tick(TimePoint now) {
    if (closed() || now < deadline()) return;
    close(m_state == State::awaiting_connect ? CloseCause::connect_timeout
                                             : CloseCause::keep_alive_timeout);
}

void ServerSession::close(CloseCause cause) {
    if (closed()) return;
    bool was_connected = m_state == State::connected;
    m_state = State::closed;
    m_close_cause = cause;
    // Pending acknowledgements stay: what was taken before the close (say, over quota) is
    // still acknowledged once safe, so the client does not send it again on reconnecting.
    if (!was_connected) return;
    DisconnectInfo info;
    info.cause = cause;
    if (cause != CloseCause::client_disconnect && m_will_topic) info.will = &m_will;
    m_handler.on_disconnect(info);
}

void ServerSession::fail(CloseCause cause, std::optional<ParseError> error) {
    m_parse_error = error;
    close(cause);
}

void ServerSession::refuse_connect(ConnectCode code, CloseCause cause) {
    m_connack_code = code;
    encode(m_output, Connack{false, code});
    close(cause);
}

void ServerSession::handle(Packet& packet) {
    if (m_state == State::awaiting_connect) {
        // [MQTT-3.1.0-1]: the first packet must be CONNECT.
        if (auto* connect = std::get_if<Connect>(&packet)) return handle_connect(*connect);
        return fail(CloseCause::protocol_error);
    }
    switch (packet_type(packet)) {
        case PacketType::publish: return handle_publish(std::get<Publish>(packet));
        case PacketType::puback: return handle_puback(std::get<Puback>(packet).packet_id);
        case PacketType::pubrel: return handle_pubrel(std::get<Pubrel>(packet).packet_id);
        case PacketType::subscribe: return handle_subscribe(std::get<Subscribe>(packet));
        case PacketType::unsubscribe: return handle_unsubscribe(std::get<Unsubscribe>(packet));
        case PacketType::pingreq: encode(m_output, Pingresp{}); return;
        case PacketType::disconnect: return close(CloseCause::client_disconnect);
        default:
            // A second CONNECT [MQTT-3.1.0-2], packets only a server sends, and PUBREC/PUBCOMP,
            // which answer QoS 2 deliveries this server never makes.
            return fail(CloseCause::protocol_error);
    }
}

void ServerSession::handle_connect(const Connect& connect) {
    if ((connect.client_id.empty() && !connect.clean_session) ||
        connect.client_id.size() > m_options.max_client_id_bytes)
        return refuse_connect(ConnectCode::identifier_rejected, CloseCause::identifier_rejected);

    ConnectRequest request;
    request.client_id = connect.client_id;
    request.username = connect.username;
    request.password = connect.password;
    request.clean_session = connect.clean_session;
    request.keep_alive_s = connect.keep_alive_s;
    request.will = connect.will ? &*connect.will : nullptr;
    ConnectDecision decision = m_handler.authenticate(request);
    if (decision.code != ConnectCode::accepted) {
        return refuse_connect(decision.code, decision.code == ConnectCode::identifier_rejected
                                                 ? CloseCause::identifier_rejected
                                                 : CloseCause::auth_failed);
    }

    m_client_id = connect.client_id;
    if (connect.username) m_username = std::string(*connect.username);
    m_clean_session = connect.clean_session;
    m_keep_alive_s = connect.keep_alive_s;
    if (connect.will) {
        m_will_topic = std::string(connect.will->topic);
        m_will_payload = std::string(connect.will->payload);
        m_will = Will{*m_will_topic, m_will_payload, connect.will->qos, connect.will->retain};
    }
    bool session_present = false;
    if (!connect.clean_session && decision.state) {
        m_session = std::move(decision.state);
        session_present = m_session->m_used;
        m_session->m_used = true;
    }
    m_state = State::connected;
    m_reader.set_max_packet_bytes(m_options.max_packet_bytes);
    m_connack_code = ConnectCode::accepted;
    encode(m_output, Connack{session_present, ConnectCode::accepted});
    // [MQTT-4.4.0-1]: unacknowledged messages are sent again, DUP set, in their order.
    for (auto& message : m_session->m_inflight) send_inflight(message, true);
    fill_window();
    m_handler.on_connected(session_present);
}

void ServerSession::handle_publish(const Publish& publish) {
    auto& awaiting = m_session->m_awaiting_pubrel;
    if (publish.qos == QoS::exactly_once &&
        std::find(awaiting.begin(), awaiting.end(), publish.packet_id) != awaiting.end()) {
        // A QoS 2 message seen before: passed on once only, acknowledged again.
        bool pending = std::any_of(m_pending_acks.begin(), m_pending_acks.end(),
                                   [&](const PendingAck& ack) { return ack.packet_id == publish.packet_id; });
        if (!pending) encode(m_output, Pubrec{publish.packet_id});
        return;
    }
    // Both bounded: a client that never acknowledges (or never releases QoS 2 messages)
    // cannot grow them, nor the searches over them.
    if (publish.qos != QoS::at_most_once && (m_pending_acks.size() >= m_options.max_pending_acks ||
                                             awaiting.size() >= m_options.max_pending_acks))
        return fail(CloseCause::too_many_pending);

    PublishOutcome outcome = m_handler.on_publish(publish);
    if (closed()) return;  // the handler closed it
    switch (outcome) {
        case PublishOutcome::refused: return close(CloseCause::publish_refused);
        case PublishOutcome::over_quota: return close(CloseCause::over_quota);
        case PublishOutcome::accepted:
        case PublishOutcome::dropped:
        case PublishOutcome::deferred: break;
    }
    if (publish.qos == QoS::at_most_once) return;
    if (publish.qos == QoS::exactly_once) awaiting.push_back(publish.packet_id);
    m_pending_acks.push_back({publish.packet_id, publish.qos, outcome != PublishOutcome::deferred});
    send_acks();
}

void ServerSession::acknowledge(uint16_t packet_id) {
    for (auto& ack : m_pending_acks) {
        if (ack.packet_id == packet_id && !ack.done) {
            ack.done = true;
            break;
        }
    }
    send_acks();
}

void ServerSession::send_acks() {
    while (!m_pending_acks.empty() && m_pending_acks.front().done) {
        const PendingAck& ack = m_pending_acks.front();
        if (ack.qos == QoS::at_least_once)
            encode(m_output, Puback{ack.packet_id});
        else
            encode(m_output, Pubrec{ack.packet_id});
        m_pending_acks.pop_front();
    }
}

void ServerSession::handle_puback(uint16_t packet_id) {
    auto& inflight = m_session->m_inflight;
    auto it = std::find_if(inflight.begin(), inflight.end(),
                           [&](const SessionState::Outgoing& m) { return m.packet_id == packet_id; });
    if (it == inflight.end()) return;  // a duplicate or a stray acknowledgement: harmless
    uint64_t tag = it->tag;
    inflight.erase(it);
    m_handler.on_delivered(tag);
    if (!closed()) fill_window();
}

void ServerSession::handle_pubrel(uint16_t packet_id) {
    auto& awaiting = m_session->m_awaiting_pubrel;
    awaiting.erase(std::remove(awaiting.begin(), awaiting.end(), packet_id), awaiting.end());
    encode(m_output, Pubcomp{packet_id});  // for an unknown id too: PUBREL is idempotent
}

void ServerSession::handle_subscribe(const Subscribe& subscribe) {
    auto& subscriptions = m_session->m_subscriptions;
    Suback suback;
    suback.packet_id = subscribe.packet_id;
    std::vector<size_t> granted;  // indexes into subscribe.topics
    for (size_t i = 0; i < subscribe.topics.size(); ++i) {
        const TopicRequest& request = subscribe.topics[i];
        auto existing = std::find_if(subscriptions.begin(), subscriptions.end(),
                                     [&](const Subscription& s) { return s.filter == request.filter; });
        if (existing == subscriptions.end() && subscriptions.size() >= m_options.max_subscriptions) {
            suback.return_codes.push_back(k_suback_failure);
            continue;
        }
        std::optional<QoS> qos = m_handler.may_subscribe(request.filter, request.qos);
        if (closed()) return;
        if (!qos) {
            suback.return_codes.push_back(k_suback_failure);
            continue;
        }
        QoS given = std::min(*qos, request.qos);
        if (existing != subscriptions.end())
            existing->qos = given;  // [MQTT-3.8.4-3]: a same filter replaces the old one
        else
            subscriptions.push_back({std::string(request.filter), given});
        suback.return_codes.push_back(static_cast<uint8_t>(given));
        granted.push_back(i);
    }
    encode(m_output, suback);
    for (size_t i : granted) {
        m_handler.on_subscribed(subscribe.topics[i].filter,
                                static_cast<QoS>(suback.return_codes[i]));
        if (closed()) return;
    }
}

void ServerSession::handle_unsubscribe(const Unsubscribe& unsubscribe) {
    auto& subscriptions = m_session->m_subscriptions;
    for (auto filter : unsubscribe.filters) {
        auto it = std::find_if(subscriptions.begin(), subscriptions.end(),
                               [&](const Subscription& s) { return s.filter == filter; });
        if (it == subscriptions.end()) continue;
        subscriptions.erase(it);
        m_handler.on_unsubscribed(filter);
        if (closed()) return;
    }
    encode(m_output, Unsuback{unsubscribe.packet_id});
}

DeliverResult ServerSession::deliver(std::string_view topic, std::string_view payload, QoS qos,
                                     uint64_t tag) {
    if (m_state != State::connected) return DeliverResult::not_connected;
    if (check_topic_name(topic)) return DeliverResult::invalid_topic;
    std::optional<QoS> granted;
    for (const auto& subscription : m_session->m_subscriptions) {
        if (topic_matches(subscription.filter, topic) && (!granted || subscription.qos > *granted))
            granted = subscription.qos;
    }
    if (!granted) return DeliverResult::not_subscribed;
    QoS effective = std::min({qos, *granted, QoS::at_least_once});
    if (effective == QoS::at_most_once) {
        encode(m_output, Publish{topic, payload, QoS::at_most_once, false, false, 0});
        return DeliverResult::sent;
    }
    if (m_session->m_queued.size() >= m_options.max_queued) return DeliverResult::queue_full;
    m_session->m_queued.push_back({tag, std::string(topic), std::string(payload), 0});
    bool waiting = m_session->m_inflight.size() >= m_options.max_inflight;
    fill_window();
    return waiting ? DeliverResult::queued : DeliverResult::sent;
}

void ServerSession::fill_window() {
    auto& queued = m_session->m_queued;
    auto& inflight = m_session->m_inflight;
    while (!queued.empty() && inflight.size() < m_options.max_inflight) {
        inflight.push_back(std::move(queued.front()));
        queued.pop_front();
        inflight.back().packet_id = next_packet_id();
        send_inflight(inflight.back(), false);
    }
}

void ServerSession::send_inflight(const SessionState::Outgoing& message, bool dup) {
    encode(m_output, Publish{message.topic, message.payload, QoS::at_least_once, false, dup,
                             message.packet_id});
}

uint16_t ServerSession::next_packet_id() {
    auto& inflight = m_session->m_inflight;
    while (true) {
        uint16_t id = m_session->m_next_packet_id++;
        if (m_session->m_next_packet_id == 0) m_session->m_next_packet_id = 1;
        // An id still in flight is skipped (the window is far smaller than 65535).
        bool used = std::any_of(inflight.begin(), inflight.end(),
                                [&](const SessionState::Outgoing& m) { return m.packet_id == id; });
        if (!used) return id;
    }
}

}  // namespace mh::mqtt
