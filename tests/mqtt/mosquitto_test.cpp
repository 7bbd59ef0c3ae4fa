// Real MQTT clients against ServerSession: mosquitto_pub and mosquitto_sub (Eclipse
// Mosquitto's own tools) connect over plaintext TCP on loopback to a one-connection poll
// loop that feeds the session. What the clients print and how they exit is checked, as
// well as what the handler saw.
#include "mqtt/session.h"

#include "support/loopback.h"

#include <gtest/gtest.h>

#include <errno.h>

#include <functional>
#include <string>
#include <vector>

using namespace mh::mqtt;
using namespace mh::test;
using namespace std::chrono_literals;

namespace {

constexpr auto k_deadline = 30s;  // generous: the machine is shared; normal runs take ms

class Gate : public SessionHandler {
public:
    ConnectDecision authenticate(const ConnectRequest& request) override {
        bool good = request.username == "gw-01" && request.password == "token-01";
        return {good ? ConnectCode::accepted : ConnectCode::bad_username_or_password, {}};
    }
    PublishOutcome on_publish(const Publish& publish) override {
        published.push_back({std::string(publish.topic), std::string(publish.payload), publish.qos});
        return PublishOutcome::accepted;
    }
    std::optional<QoS> may_subscribe(std::string_view filter, QoS requested) override {
        if (filter != "commands/gw-01/#") return std::nullopt;
        return requested;
    }
    void on_subscribed(std::string_view, QoS) override { ++subscribed; }
    void on_delivered(uint64_t tag) override { delivered.push_back(tag); }

    struct Message {
        std::string topic, payload;
        QoS qos;
    };
    std::vector<Message> published;
    int subscribed = 0;
    std::vector<uint64_t> delivered;
};

// Serves one accepted connection with `session` until the connection ends (and the session's
// last bytes are written) or the deadline passes. `step` runs after every event.
void serve(ServerSession& session, Fd& connection, ChildProcess& child,
           const std::function<void()>& step = [] {}) {
    auto end = Clock::now() + k_deadline;
    bool open = true;
    while (open && Clock::now() < end) {
        pollfd p{connection.get(), static_cast<short>(POLLIN | (session.output().empty() ? 0 : POLLOUT)), 0};
        ::poll(&p, 1, 50);
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buffer[4096];
            ssize_t n = ::read(connection.get(), buffer, sizeof(buffer));
            if (n > 0) {
                session.receive(std::string_view(buffer, n), Clock::now());
            } else if (n == 0 || errno != EAGAIN) {
                session.peer_closed();
                open = false;
            }
        }
        while (!session.output().empty()) {
            ssize_t n = ::write(connection.get(), session.output().data(), session.output().size());
            if (n <= 0) break;
            session.consume_output(n);
        }
        session.tick(Clock::now());
        step();
        if (session.closed() && session.output().empty()) open = false;
        child.collect();
    }
}

std::vector<std::string> client(const char* program, int port, std::vector<std::string> args) {
    std::vector<std::string> argv{program, "-h", "127.0.0.1", "-p", std::to_string(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

}  // namespace

TEST(Mosquitto, PubAtEveryQosArrives) {
    LoopbackListener listener;
    Gate gate;
    for (const char* qos : {"0", "1", "2"}) {
        ChildProcess pub(client("mosquitto_pub", listener.port(),
                                {"-i", "gw-01", "-u", "gw-01", "-P", "token-01", "-q", qos,
                                 "-t", "telemetry/sensor-1", "-m", std::string("{\"qos\":") + qos + "}",
                                 "--repeat", "3"}));
        Fd connection = listener.accept(k_deadline);
        ASSERT_TRUE(connection) << "mosquitto_pub did not connect: " << pub.err();
        ServerSession session(gate, {}, Clock::now());
        serve(session, connection, pub);
        EXPECT_EQ(session.close_cause(), CloseCause::client_disconnect) << describe(session.close_cause());
        EXPECT_EQ(pub.wait(k_deadline), 0) << pub.err();
    }
    ASSERT_EQ(gate.published.size(), 9u);
    for (int i = 0; i < 9; ++i) {
        EXPECT_EQ(gate.published[i].topic, "telemetry/sensor-1");
        EXPECT_EQ(static_cast<int>(gate.published[i].qos), i / 3);
        EXPECT_EQ(gate.published[i].payload, "{\"qos\":" + std::to_string(i / 3) + "}");
    }
}

TEST(Mosquitto, SubReceivesADeliveredCommand) {
    LoopbackListener listener;
    Gate gate;
    ChildProcess sub(client("mosquitto_sub", listener.port(),
                            {"-i", "gw-01", "-u", "gw-01", "-P", "token-01", "-q", "1", "-t",
                             "commands/gw-01/#", "-C", "1", "-v"}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << "mosquitto_sub did not connect: " << sub.err();
    ServerSession session(gate, {}, Clock::now());
    bool sent = false;
    serve(session, connection, sub, [&] {
        if (gate.subscribed && !sent) {
            EXPECT_EQ(session.deliver("commands/gw-01/sensor-1", "{\"set\":\"reboot\"}",
                                      QoS::at_least_once, 4711),
                      DeliverResult::sent);
            sent = true;
        }
    });
    EXPECT_EQ(sub.wait(k_deadline), 0) << sub.err();
    EXPECT_EQ(sub.out(), "commands/gw-01/sensor-1 {\"set\":\"reboot\"}\n");
    EXPECT_EQ(gate.delivered, std::vector<uint64_t>{4711});  // its PUBACK came back
    EXPECT_EQ(session.close_cause(), CloseCause::client_disconnect);
}

TEST(Mosquitto, WrongPasswordIsRefused) {
    LoopbackListener listener;
    Gate gate;
    ChildProcess pub(client("mosquitto_pub", listener.port(),
                            {"-i", "gw-01", "-u", "gw-01", "-P", "wrong", "-t", "telemetry/s", "-m", "x"}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection);
    ServerSession session(gate, {}, Clock::now());
    serve(session, connection, pub);
    EXPECT_EQ(session.close_cause(), CloseCause::auth_failed);
    connection.reset();
    EXPECT_NE(pub.wait(k_deadline), 0);
    EXPECT_NE(pub.err().find("bad user name or password"), std::string::npos) << pub.err();
    EXPECT_TRUE(gate.published.empty());
}

TEST(Mosquitto, Mqtt5ClientIsRefused) {
    LoopbackListener listener;
    Gate gate;
    ChildProcess pub(client("mosquitto_pub", listener.port(),
                            {"-V", "5", "-i", "gw-01", "-u", "gw-01", "-P", "token-01", "-t",
                             "telemetry/s", "-m", "x"}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection);
    ServerSession session(gate, {}, Clock::now());
    serve(session, connection, pub);
    EXPECT_EQ(session.close_cause(), CloseCause::unsupported_version);
    connection.reset();
    EXPECT_NE(pub.wait(k_deadline), 0);
    EXPECT_TRUE(gate.published.empty());
}

TEST(Mosquitto, PersistentSessionRetransmitsToARealClient) {
    // A gate that keeps persistent states per client id, as the endpoint will.
    class PersistentGate : public Gate {
    public:
        ConnectDecision authenticate(const ConnectRequest& request) override {
            if (request.username != "gw-01" || request.password != "token-01")
                return {ConnectCode::bad_username_or_password, {}};
            if (!state) state = std::make_shared<SessionState>();
            return {ConnectCode::accepted, state};
        }
        std::shared_ptr<SessionState> state;
    };
    PersistentGate gate;
    // First connection: a gateway subscribes, is sent a command, and vanishes before its PUBACK.
    {
        ServerSession session(gate, {}, Clock::now());
        std::string bytes;
        Connect connect;
        connect.client_id = "gw-01";
        connect.clean_session = false;
        connect.username = "gw-01";
        connect.password = "token-01";
        encode(bytes, connect);
        encode(bytes, Subscribe{1, {{"commands/gw-01/#", QoS::at_least_once}}});
        session.receive(bytes, Clock::now());
        ASSERT_EQ(session.state(), ServerSession::State::connected);
        EXPECT_EQ(session.deliver("commands/gw-01/valve", "close", QoS::at_least_once, 9), DeliverResult::sent);
        session.peer_closed();
    }
    ASSERT_EQ(gate.state->inflight_count(), 1u);
    // Second connection: mosquitto_sub resumes the session (-c) and gets the command again.
    LoopbackListener listener;
    ChildProcess sub(client("mosquitto_sub", listener.port(),
                            {"-c", "-i", "gw-01", "-u", "gw-01", "-P", "token-01", "-q", "1", "-t",
                             "commands/gw-01/#", "-C", "1", "-v"}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << sub.err();
    ServerSession session(gate, {}, Clock::now());
    serve(session, connection, sub);
    EXPECT_EQ(sub.wait(k_deadline), 0) << sub.err();
    EXPECT_EQ(sub.out(), "commands/gw-01/valve close\n");
    EXPECT_EQ(gate.delivered, std::vector<uint64_t>{9});
    EXPECT_EQ(gate.state->inflight_count(), 0u);
}
