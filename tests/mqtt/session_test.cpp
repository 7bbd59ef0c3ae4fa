// The server session state machine, driven as a client would: packets in, packets out,
// a recording handler that decides what the endpoint would decide.
#include "mqtt/session.h"

#include "mqtt/topic.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace mh::mqtt;
using namespace std::chrono_literals;

namespace {

struct Received {
    std::string topic, payload;
    QoS qos;
    uint16_t packet_id;
};

// Accepts user "gw" with password "secret", publishes under "telemetry/", subscriptions
// under "commands/gw/"; keeps persistent states per client id as the endpoint would.
class Gate : public SessionHandler {
public:
    ConnectDecision authenticate(const ConnectRequest& request) override {
        ++connects;
        if (!request.username || *request.username != "gw") return {ConnectCode::not_authorized, {}};
        if (!request.password || *request.password != "secret")
            return {ConnectCode::bad_username_or_password, {}};
        if (request.clean_session) {
            states.erase(std::string(request.client_id));
            return {};
        }
        auto& state = states[std::string(request.client_id)];
        if (!state) state = std::make_shared<SessionState>();
        return {ConnectCode::accepted, state};
    }
    void on_connected(bool present) override { session_present = present; }
    PublishOutcome on_publish(const Publish& publish) override {
        if (publish.topic.rfind("telemetry/", 0) != 0) return PublishOutcome::dropped;
        received.push_back({std::string(publish.topic), std::string(publish.payload), publish.qos,
                            publish.packet_id});
        return outcome;
    }
    std::optional<QoS> may_subscribe(std::string_view filter, QoS requested) override {
        if (filter.rfind("commands/gw/", 0) != 0) return std::nullopt;
        return std::min(requested, QoS::at_least_once);
    }
    void on_subscribed(std::string_view filter, QoS) override { subscribed.emplace_back(filter); }
    void on_unsubscribed(std::string_view filter) override { unsubscribed.emplace_back(filter); }
    void on_delivered(uint64_t tag) override { delivered.push_back(tag); }
    void on_disconnect(const DisconnectInfo& info) override {
        disconnects.push_back(info.cause);
        if (info.will) will_topic = std::string(info.will->topic);
    }

    PublishOutcome outcome = PublishOutcome::accepted;
    std::map<std::string, std::shared_ptr<SessionState>> states;
    int connects = 0;
    bool session_present = false;
    std::vector<Received> received;
    std::vector<std::string> subscribed, unsubscribed;
    std::vector<uint64_t> delivered;
    std::vector<CloseCause> disconnects;
    std::string will_topic;
};

// A session and a client's view of it: send packets, read back what the server said.
class Client {
public:
    explicit Client(Gate& gate, SessionOptions options = {})
        : session(gate, options, now) {}

    template <typename P>
    void send(const P& packet) {
        std::string bytes;
        encode(bytes, packet);
        session.receive(bytes, now);
    }
    void send_raw(std::string_view bytes) { session.receive(bytes, now); }

    // Every packet the server wrote since the last call.
    std::vector<Packet> replies() {
        reader.feed(std::string(session.output()));
        session.consume_output(session.output().size());
        std::vector<Packet> packets;
        Packet packet;
        while (reader.next(packet) == ReadStatus::packet) {
            packets.push_back(packet);
            // Views into the reader's buffer stay valid until its next feed(): copy what a
            // test keeps by value.
            if (auto* p = std::get_if<Publish>(&packets.back())) {
                topics.emplace_back(p->topic);
                payloads.emplace_back(p->payload);
            }
        }
        EXPECT_FALSE(reader.error()) << describe(*reader.error());
        return packets;
    }

    Connect connect_packet(std::string_view id = "gw-01", bool clean = true) {
        Connect connect;
        connect.client_id = id;
        connect.clean_session = clean;
        connect.keep_alive_s = 10;
        connect.username = "gw";
        connect.password = "secret";
        return connect;
    }
    void connect(std::string_view id = "gw-01", bool clean = true) {
        send(connect_packet(id, clean));
        auto packets = replies();
        ASSERT_EQ(packets.size(), 1u);
        ASSERT_EQ(std::get<Connack>(packets[0]).code, ConnectCode::accepted);
    }

    TimePoint now = TimePoint{} + 1000s;
    ServerSession session;
    PacketReader reader;
    std::vector<std::string> topics, payloads;
};

}  // namespace

TEST(Session, ConnectAndPublishQos0And1) {
    Gate gate;
    Client client(gate);
    client.send(client.connect_packet());
    auto replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    auto connack = std::get<Connack>(replies[0]);
    EXPECT_EQ(connack.code, ConnectCode::accepted);
    EXPECT_FALSE(connack.session_present);
    EXPECT_EQ(client.session.state(), ServerSession::State::connected);
    EXPECT_EQ(client.session.client_id(), "gw-01");
    EXPECT_EQ(client.session.username(), "gw");
    EXPECT_EQ(client.session.keep_alive_timeout(), 15s);

    client.send(Publish{"telemetry/s1", "{\"t\":1}", QoS::at_most_once, false, false, 0});
    EXPECT_TRUE(client.replies().empty());  // QoS 0: nothing to acknowledge
    client.send(Publish{"telemetry/s1", "{\"t\":2}", QoS::at_least_once, false, false, 42});
    replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Puback>(replies[0]).packet_id, 42);
    ASSERT_EQ(gate.received.size(), 2u);
    EXPECT_EQ(gate.received[1].payload, "{\"t\":2}");
    EXPECT_EQ(gate.received[1].qos, QoS::at_least_once);

    client.send(Pingreq{});
    replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(packet_type(replies[0]), PacketType::pingresp);

    client.send(Disconnect{});
    EXPECT_TRUE(client.session.closed());
    EXPECT_EQ(client.session.close_cause(), CloseCause::client_disconnect);
    EXPECT_EQ(gate.disconnects, std::vector{CloseCause::client_disconnect});
}

TEST(Session, AuthenticationRefusals) {
    Gate gate;
    {
        Client client(gate);
        auto connect = client.connect_packet();
        connect.password = "wrong";
        client.send(connect);
        auto replies = client.replies();
        ASSERT_EQ(replies.size(), 1u);
        EXPECT_EQ(std::get<Connack>(replies[0]).code, ConnectCode::bad_username_or_password);
        EXPECT_TRUE(client.session.closed());
        EXPECT_EQ(client.session.close_cause(), CloseCause::auth_failed);
        EXPECT_EQ(client.session.connack_code(), ConnectCode::bad_username_or_password);
    }
    {
        Client client(gate);
        auto connect = client.connect_packet();
        connect.username = "intruder";
        client.send(connect);
        EXPECT_EQ(std::get<Connack>(client.replies()[0]).code, ConnectCode::not_authorized);
        // Bytes after a refused CONNECT are ignored.
        client.send(Publish{"telemetry/x", "1", QoS::at_most_once, false, false, 0});
        EXPECT_TRUE(gate.received.empty());
    }
    {
        Client client(gate);
        client.send(client.connect_packet("", false));  // persistent needs an id
        EXPECT_EQ(std::get<Connack>(client.replies()[0]).code, ConnectCode::identifier_rejected);
        EXPECT_EQ(client.session.close_cause(), CloseCause::identifier_rejected);
    }
    {
        Client client(gate);
        std::string long_id(300, 'x');
        client.send(client.connect_packet(long_id));
        EXPECT_EQ(std::get<Connack>(client.replies()[0]).code, ConnectCode::identifier_rejected);
    }
    EXPECT_TRUE(gate.disconnects.empty());  // never connected, never disconnected
}

TEST(Session, Mqtt5IsRefusedWithConnack) {
    Gate gate;
    Client client(gate);
    // An MQTT 5 CONNECT as mosquitto_pub -V 5 sends it (with its property length).
    std::string body = std::string("\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02id", 14);
    std::string bytes = std::string(1, '\x10') + static_cast<char>(body.size()) + body;
    client.send_raw(bytes);
    auto replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Connack>(replies[0]).code, ConnectCode::unacceptable_protocol_version);
    EXPECT_EQ(client.session.close_cause(), CloseCause::unsupported_version);
    EXPECT_EQ(gate.connects, 0);
}

TEST(Session, ProtocolErrors) {
    Gate gate;
    {
        Client client(gate);  // anything before CONNECT
        client.send(Pingreq{});
        EXPECT_TRUE(client.session.closed());
        EXPECT_EQ(client.session.close_cause(), CloseCause::protocol_error);
        EXPECT_TRUE(client.replies().empty());
    }
    {
        Client client(gate);  // a second CONNECT
        client.connect();
        client.send(client.connect_packet());
        EXPECT_EQ(client.session.close_cause(), CloseCause::protocol_error);
        EXPECT_EQ(gate.disconnects.back(), CloseCause::protocol_error);
    }
    {
        Client client(gate);  // garbage after connecting: a malformed packet
        client.connect();
        client.send_raw(std::string("\x30\x03\x00\x05" "a", 5));  // topic of 5 in 3 bytes
        EXPECT_EQ(client.session.close_cause(), CloseCause::protocol_error);
        EXPECT_EQ(client.session.parse_error(), ParseError::truncated);
    }
    {
        Client client(gate);  // packets only a server sends
        client.connect();
        client.send(Connack{});
        EXPECT_EQ(client.session.close_cause(), CloseCause::protocol_error);
    }
    {
        Client client(gate);  // a will topic is copied and handed over on an unclean end
        auto connect = client.connect_packet();
        connect.will = Will{"status/gw-01", "gone", QoS::at_most_once, false};
        client.send(connect);
        client.replies();
        client.session.peer_closed();
        EXPECT_EQ(client.session.close_cause(), CloseCause::connection_lost);
        EXPECT_EQ(gate.will_topic, "status/gw-01");
    }
}

TEST(Session, SizeLimitsBeforeAndAfterConnect) {
    Gate gate;
    SessionOptions options;
    options.max_connect_bytes = 64;
    options.max_packet_bytes = 1024;
    {
        Client client(gate, options);  // a CONNECT over the pre-authentication limit
        auto connect = client.connect_packet(std::string(100, 'x'));
        client.send(connect);
        EXPECT_EQ(client.session.close_cause(), CloseCause::too_large);
        EXPECT_EQ(gate.connects, 0);
    }
    {
        Client client(gate, options);
        client.connect();
        // 500 bytes pass once connected; a PUBLISH announcing 1 MiB is refused from its header.
        client.send(Publish{"telemetry/s", std::string(500, 'x'), QoS::at_most_once, false, false, 0});
        EXPECT_EQ(gate.received.size(), 1u);
        client.send_raw(std::string("\x30\x80\x80\x40", 4));
        EXPECT_EQ(client.session.close_cause(), CloseCause::too_large);
        EXPECT_EQ(client.session.parse_error(), ParseError::too_large);
    }
}

TEST(Session, PublishOutcomes) {
    Gate gate;
    Client client(gate);
    client.connect();
    // Dropped (not under telemetry/): acknowledged all the same, not passed on.
    client.send(Publish{"other/s1", "x", QoS::at_least_once, false, false, 1});
    auto replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Puback>(replies[0]).packet_id, 1);
    EXPECT_TRUE(gate.received.empty());

    // Deferred: no PUBACK until acknowledge(), and acknowledgements keep arrival order.
    gate.outcome = PublishOutcome::deferred;
    client.send(Publish{"telemetry/a", "1", QoS::at_least_once, false, false, 10});
    client.send(Publish{"telemetry/a", "2", QoS::at_least_once, false, false, 11});
    EXPECT_TRUE(client.replies().empty());
    EXPECT_EQ(client.session.pending_acks(), 2u);
    client.session.acknowledge(11);
    EXPECT_TRUE(client.replies().empty());  // 10 is not done yet
    client.session.acknowledge(10);
    replies = client.replies();
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_EQ(std::get<Puback>(replies[0]).packet_id, 10);
    EXPECT_EQ(std::get<Puback>(replies[1]).packet_id, 11);
    client.session.acknowledge(999);  // unknown: ignored
    EXPECT_TRUE(client.replies().empty());

    // Over quota: the connection ends, no acknowledgement for that one; one taken before it
    // (deferred, not yet safe) is still acknowledged once it is, so it is not sent again.
    gate.outcome = PublishOutcome::deferred;
    client.send(Publish{"telemetry/a", "3", QoS::at_least_once, false, false, 12});
    gate.outcome = PublishOutcome::over_quota;
    client.send(Publish{"telemetry/a", "4", QoS::at_least_once, false, false, 13});
    EXPECT_TRUE(client.replies().empty());
    EXPECT_EQ(client.session.close_cause(), CloseCause::over_quota);
    EXPECT_EQ(gate.disconnects, std::vector{CloseCause::over_quota});
    client.session.acknowledge(12);
    replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Puback>(replies[0]).packet_id, 12);
    client.session.acknowledge(13);  // refused, never pending: nothing
    EXPECT_TRUE(client.replies().empty());
}

TEST(Session, RefusedAndTooManyPending) {
    Gate gate;
    {
        Client client(gate);
        client.connect();
        gate.outcome = PublishOutcome::refused;
        client.send(Publish{"telemetry/a", "1", QoS::at_most_once, false, false, 0});
        EXPECT_EQ(client.session.close_cause(), CloseCause::publish_refused);
    }
    {
        SessionOptions options;
        options.max_pending_acks = 2;
        Client client(gate, options);
        client.connect();
        gate.outcome = PublishOutcome::deferred;
        for (uint16_t id = 1; id <= 3; ++id)
            client.send(Publish{"telemetry/a", "1", QoS::at_least_once, false, false, id});
        EXPECT_EQ(client.session.close_cause(), CloseCause::too_many_pending);
    }
    {
        SessionOptions options;
        options.max_pending_acks = 2;
        Client client(gate, options);
        client.connect();
        gate.outcome = PublishOutcome::accepted;
        for (uint16_t id = 1; id <= 3; ++id)  // QoS 2, never released
            client.send(Publish{"telemetry/a", "1", QoS::exactly_once, false, false, id});
        EXPECT_EQ(client.replies().size(), 2u);  // two PUBRECs, then the end
        EXPECT_EQ(client.session.close_cause(), CloseCause::too_many_pending);
    }
}

TEST(Session, Qos2IsPassedOnOnce) {
    Gate gate;
    Client client(gate);
    client.connect();
    Publish publish{"telemetry/q2", "once", QoS::exactly_once, false, false, 7};
    client.send(publish);
    auto replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Pubrec>(replies[0]).packet_id, 7);
    publish.dup = true;  // the client did not see the PUBREC and sends it again
    client.send(publish);
    replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Pubrec>(replies[0]).packet_id, 7);
    EXPECT_EQ(gate.received.size(), 1u);
    client.send(Pubrel{7});
    replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Pubcomp>(replies[0]).packet_id, 7);
    // Released: the same id is a new message now.
    publish.dup = false;
    client.send(publish);
    EXPECT_EQ(gate.received.size(), 2u);
}

TEST(Session, SubscribeUnsubscribeAndDeliver) {
    Gate gate;
    Client client(gate);
    client.connect();
    EXPECT_EQ(client.session.deliver("commands/gw/s1", "x", QoS::at_least_once), DeliverResult::not_subscribed);
    client.send(Subscribe{3, {{"commands/gw/#", QoS::exactly_once}, {"commands/other/#", QoS::at_most_once}}});
    auto replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    auto suback = std::get<Suback>(replies[0]);
    EXPECT_EQ(suback.packet_id, 3);
    EXPECT_EQ(suback.return_codes, (std::vector<uint8_t>{1, k_suback_failure}));
    EXPECT_EQ(gate.subscribed, std::vector<std::string>{"commands/gw/#"});

    EXPECT_EQ(client.session.deliver("commands/gw/s1", "reboot", QoS::exactly_once, 100), DeliverResult::sent);
    EXPECT_EQ(client.session.deliver("commands/gw/s2", "ping", QoS::at_most_once), DeliverResult::sent);
    EXPECT_EQ(client.session.deliver("commands/other/s1", "x", QoS::at_most_once), DeliverResult::not_subscribed);
    EXPECT_EQ(client.session.deliver("commands/gw/+", "x", QoS::at_most_once), DeliverResult::invalid_topic);
    replies = client.replies();
    ASSERT_EQ(replies.size(), 2u);
    auto command = std::get<Publish>(replies[0]);
    EXPECT_EQ(command.qos, QoS::at_least_once);  // QoS 2 downgraded, granted 1
    EXPECT_EQ(client.payloads[0], "reboot");
    EXPECT_EQ(std::get<Publish>(replies[1]).qos, QoS::at_most_once);
    EXPECT_EQ(client.session.session_state().inflight_count(), 1u);
    client.send(Puback{command.packet_id});
    EXPECT_EQ(gate.delivered, std::vector<uint64_t>{100});
    EXPECT_EQ(client.session.session_state().inflight_count(), 0u);

    client.send(Unsubscribe{4, {"commands/gw/#", "never/subscribed"}});
    replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(std::get<Unsuback>(replies[0]).packet_id, 4);
    EXPECT_EQ(gate.unsubscribed, std::vector<std::string>{"commands/gw/#"});
    EXPECT_EQ(client.session.deliver("commands/gw/s1", "x", QoS::at_most_once), DeliverResult::not_subscribed);
}

TEST(Session, InflightWindowAndQueue) {
    Gate gate;
    SessionOptions options;
    options.max_inflight = 2;
    options.max_queued = 3;
    Client client(gate, options);
    client.connect();
    client.send(Subscribe{1, {{"commands/gw/#", QoS::at_least_once}}});
    client.replies();
    EXPECT_EQ(client.session.deliver("commands/gw/a", "1", QoS::at_least_once, 1), DeliverResult::sent);
    EXPECT_EQ(client.session.deliver("commands/gw/a", "2", QoS::at_least_once, 2), DeliverResult::sent);
    EXPECT_EQ(client.session.deliver("commands/gw/a", "3", QoS::at_least_once, 3), DeliverResult::queued);
    EXPECT_EQ(client.session.deliver("commands/gw/a", "4", QoS::at_least_once, 4), DeliverResult::queued);
    EXPECT_EQ(client.session.deliver("commands/gw/a", "5", QoS::at_least_once, 5), DeliverResult::queued);
    EXPECT_EQ(client.session.deliver("commands/gw/a", "6", QoS::at_least_once, 6), DeliverResult::queue_full);
    auto replies = client.replies();
    ASSERT_EQ(replies.size(), 2u);
    // Acknowledging the first lets the third go.
    client.send(Puback{std::get<Publish>(replies[0]).packet_id});
    replies = client.replies();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(client.payloads.back(), "3");
    EXPECT_EQ(gate.delivered, std::vector<uint64_t>{1});
    // A stray or repeated PUBACK changes nothing.
    client.send(Puback{60000});
    EXPECT_TRUE(client.replies().empty());
}

TEST(Session, PersistentSessionResumesAndRetransmits) {
    Gate gate;
    uint16_t first_id;
    {
        Client client(gate);
        client.connect("gw-p", false);
        EXPECT_FALSE(gate.session_present);
        client.send(Subscribe{1, {{"commands/gw/#", QoS::at_least_once}}});
        client.replies();
        EXPECT_EQ(client.session.deliver("commands/gw/a", "unacked", QoS::at_least_once, 77),
                  DeliverResult::sent);
        auto replies = client.replies();
        first_id = std::get<Publish>(replies[0]).packet_id;
        client.session.peer_closed();  // gone before its PUBACK
    }
    {
        Client client(gate);
        client.send(client.connect_packet("gw-p", false));
        auto replies = client.replies();
        ASSERT_EQ(replies.size(), 2u);
        EXPECT_TRUE(std::get<Connack>(replies[0]).session_present);
        EXPECT_TRUE(gate.session_present);
        auto again = std::get<Publish>(replies[1]);
        EXPECT_TRUE(again.dup);
        EXPECT_EQ(again.packet_id, first_id);
        EXPECT_EQ(client.payloads.back(), "unacked");
        // The subscription survived too.
        EXPECT_EQ(client.session.deliver("commands/gw/b", "next", QoS::at_least_once, 78), DeliverResult::sent);
        client.send(Puback{first_id});
        EXPECT_EQ(gate.delivered, std::vector<uint64_t>{77});
    }
    {
        Client client(gate);  // a clean session drops it all
        client.connect("gw-p", true);
        EXPECT_FALSE(gate.session_present);
        EXPECT_EQ(client.session.deliver("commands/gw/b", "x", QoS::at_least_once), DeliverResult::not_subscribed);
    }
}

TEST(Session, Timeouts) {
    Gate gate;
    SessionOptions options;
    options.connect_timeout = 5s;
    {
        Client client(gate, options);
        EXPECT_EQ(client.session.deadline(), client.now + 5s);
        client.session.tick(client.now + 4s);
        EXPECT_FALSE(client.session.closed());
        client.session.tick(client.now + 5s);
        EXPECT_EQ(client.session.close_cause(), CloseCause::connect_timeout);
        EXPECT_EQ(client.session.deadline(), TimePoint::max());
    }
    {
        Client client(gate, options);
        client.connect();  // keep-alive 10 s: 15 s of silence allowed
        EXPECT_EQ(client.session.deadline(), client.now + 15s);
        client.now += 14s;
        client.send(Pingreq{});
        EXPECT_EQ(client.session.deadline(), client.now + 15s);
        client.session.tick(client.now + 14s);
        EXPECT_FALSE(client.session.closed());
        client.session.tick(client.now + 15s);
        EXPECT_EQ(client.session.close_cause(), CloseCause::keep_alive_timeout);
        EXPECT_EQ(gate.disconnects.back(), CloseCause::keep_alive_timeout);
    }
    {
        Client client(gate, options);
        auto connect = client.connect_packet();
        connect.keep_alive_s = 0;  // none asked: no deadline
        client.send(connect);
        EXPECT_EQ(client.session.deadline(), TimePoint::max());
    }
}

TEST(Session, OutputIsConsumedPiecewise) {
    Gate gate;
    Client client(gate);
    client.send(client.connect_packet());
    std::string all(client.session.output());
    ASSERT_EQ(all.size(), 4u);
    client.session.consume_output(1);
    EXPECT_EQ(client.session.output(), all.substr(1));
    client.session.consume_output(3);
    EXPECT_TRUE(client.session.output().empty());
}

TEST(Session, TakeoverByANewerConnection) {
    Gate gate;
    Client first(gate);
    first.connect("gw-t", false);
    first.send(Subscribe{1, {{"commands/gw/#", QoS::at_least_once}}});
    first.replies();
    // The caller sees a second CONNECT for the same client id: the older session goes first.
    first.session.close(CloseCause::taken_over);
    EXPECT_EQ(gate.disconnects.back(), CloseCause::taken_over);
    EXPECT_STREQ(describe(CloseCause::taken_over), "taken over by a newer connection");
    Client second(gate);
    second.connect("gw-t", false);
    EXPECT_TRUE(gate.session_present);
    EXPECT_EQ(second.session.deliver("commands/gw/x", "1", QoS::at_least_once), DeliverResult::sent);
    EXPECT_EQ(first.session.deliver("commands/gw/x", "1", QoS::at_least_once), DeliverResult::not_connected);
}
