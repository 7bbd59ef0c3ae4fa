// lib/endpoint: the real server loop on a real TLS listener, driven by the native client.
// The gatekeeper here is a table (the registry file's own tests are lib/gateway's); what is
// tested is the loop: login, stamping, refusals by reason, quotas, acks, commands.
#include "core/error.h"
#include "endpoint/native.h"
#include "mqtt/packet.h"
#include "endpoint/server.h"
#include "message/scratch_builder.h"
#include "support/pki.h"
#include "support/support.h"
#include "wire/fd_input.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <map>
#include <mutex>
#include <thread>

namespace {

using namespace mh;
using namespace mh::endpoint;

const test::Pki& pki() {
    static test::Pki instance;
    return instance;
}

// gw-01 may publish sensor-1*, gw-02 sensor-2*; tokens are "secret-<gateway>".
class TableGatekeeper final : public Gatekeeper {
public:
    std::map<std::string, Quota> quotas;
    std::map<std::string, std::string> certificates;  // fingerprint hex -> gateway

    Login check_token(std::string_view gateway, std::string_view token, int64_t) const override {
        if (gateway != "gw-01" && gateway != "gw-02") return {std::nullopt, "unknown gateway"};
        if (token != "secret-" + std::string(gateway)) return {std::nullopt, "bad token"};
        return {std::string(gateway), ""};
    }
    Login check_certificate(const tls::Fingerprint& fingerprint) const override {
        auto it = certificates.find(tls::fingerprint_hex(fingerprint));
        if (it == certificates.end()) return {std::nullopt, "unknown certificate"};
        return {it->second, ""};
    }
    bool may_publish(std::string_view gateway, std::string_view source) const override {
        return source.starts_with(gateway == "gw-01" ? "sensor-1" : "sensor-2");
    }
    Quota quota(std::string_view gateway) const override {
        auto it = quotas.find(std::string(gateway));
        return it == quotas.end() ? Quota{} : it->second;
    }
};

class CollectingSink final : public wire::FrameSink {
public:
    void write(const wire::Frame& frame) override {
        std::lock_guard lock(m_mutex);
        auto bytes = frame.bytes();
        m_pending.emplace_back(bytes.begin(), bytes.end());
    }
    void flush() override {
        std::lock_guard lock(m_mutex);
        for (auto& f : m_pending) m_frames.push_back(std::move(f));
        m_pending.clear();
    }
    std::vector<std::vector<std::byte>> frames() {
        std::lock_guard lock(m_mutex);
        return m_frames;
    }

private:
    std::mutex m_mutex;
    std::vector<std::vector<std::byte>> m_pending, m_frames;
};

struct Received {
    std::string source, gateway, kind;
    int64_t time, ingested;
    std::string id;
    double temperature;
};

Received read(const std::vector<std::byte>& bytes) {
    auto words = test::to_words(bytes);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    auto m = reader.getRoot<schema::Message>();
    Received r{m.getSource(), m.getGateway(), m.getKind(), m.getTime(), m.getIngested(),
               std::string(reinterpret_cast<const char*>(m.getId().begin()), m.getId().size()), 0};
    for (auto f : m.getFields())
        if (f.getName() == "temperature") r.temperature = f.getValue().getFloat();
    return r;
}

std::vector<std::byte> message(const std::string& source, const std::string& gateway = "",
                               const std::string& kind = "telemetry", size_t body_bytes = 0) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    m.setTime(1'700'000'000'000'000'000);
    m.setSource(source);
    m.setGateway(gateway);
    m.setKind(kind);
    auto fields = m.initFields(1);
    fields[0].setName("temperature");
    fields[0].getValue().setFloat(21.5);
    if (body_bytes) m.initBody(body_bytes);
    std::vector<std::byte> out;
    wire::append_frame(builder, out);
    return out;
}

wire::Frame as_frame(const std::vector<std::byte>& bytes) {
    return {reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / sizeof(capnp::word)};
}

// A server on 127.0.0.1:0 with TLS (client certificates optional), in a thread of its own.
class ServerTest : public ::testing::Test {
protected:
    void start(ServerOptions options = {}, wire::FrameSource* commands = nullptr) {
        std::signal(SIGPIPE, SIG_IGN);  // as run_main() does: a peer that hangs up is an error code
        options.native = HostPort{"127.0.0.1", 0};
        options.seed = 42;
        gatekeeper.certificates[pki().fingerprint("gw-02")] = "gw-02";
        auto context = tls::Context::server({pki().path("server.crt"), pki().path("server.key"), pki().path("ca.crt"),
                                             tls::ClientCerts::optional});
        server = std::make_unique<Server>(options, context, gatekeeper, sink, commands, registry, log, stop);
        std::string bound = server->bound().at(Protocol::native);
        address = {"127.0.0.1", static_cast<uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1)))};
        thread = std::thread([this] { server->run(); });
    }
    void TearDown() override {
        stop = true;
        if (thread.joinable()) thread.join();
    }
    std::shared_ptr<tls::Context> client_tls(const std::string& cert = "") {
        return tls::Context::client({pki().path("ca.crt"), cert.empty() ? "" : pki().path(cert + ".crt"),
                                     cert.empty() ? "" : pki().path(cert + ".key")});
    }
    uint64_t refused(const std::string& why) {
        std::string text = registry.render();
        std::string key = "mh_endpoint_refused_total{reason=\"" + why + "\"} ";
        size_t at = text.find(key);
        return at == std::string::npos ? 0 : std::stoull(text.substr(at + key.size()));
    }
    bool wait_for(const std::function<bool()>& condition) {
        for (int i = 0; i < 3000; ++i) {
            if (condition()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    TableGatekeeper gatekeeper;
    CollectingSink sink;
    metrics::Registry registry;
    Log log{"test_endpoint", LogLevel::error};
    StopFlag stop{false};
    std::unique_ptr<Server> server;
    std::thread thread;
    HostPort address;
};

TEST_F(ServerTest, AcceptedMessagesAreStampedWithTheGateway) {
    start();
    NativeClient client(address, client_tls(), "gw-01", "secret-gw-01");
    // A client that claims another gateway is overwritten.
    auto one = message("sensor-100", "gw-02");
    auto two = message("sensor-101");
    client.send(as_frame(one));
    client.send(as_frame(two));
    Ack ack = client.wait_ack(2);
    EXPECT_EQ(ack.handled, 2u);
    EXPECT_EQ(ack.refused, 0u);
    auto frames = sink.frames();  // acknowledged means in the output
    ASSERT_EQ(frames.size(), 2u);
    auto a = read(frames[0]), b = read(frames[1]);
    EXPECT_EQ(a.gateway, "gw-01");
    EXPECT_EQ(a.source, "sensor-100");
    EXPECT_EQ(b.source, "sensor-101");
    EXPECT_EQ(a.kind, "telemetry");
    EXPECT_EQ(a.time, 1'700'000'000'000'000'000);
    EXPECT_GT(a.ingested, 1'700'000'000'000'000'000);
    EXPECT_EQ(a.temperature, 21.5);
    EXPECT_EQ(a.id.size(), 16u);
    EXPECT_LT(a.id, b.id);  // fresh, time-ordered ids
}

TEST_F(ServerTest, WrongTokenAndUnknownGatewayAreRefused) {
    start();
    EXPECT_THROW(NativeClient(address, client_tls(), "gw-01", "secret-gw-02"), mh::Error);
    EXPECT_THROW(NativeClient(address, client_tls(), "gw-99", "whatever"), mh::Error);
    EXPECT_THROW(NativeClient(address, client_tls(), "gw-01", ""), mh::Error);  // neither token nor certificate
    EXPECT_EQ(refused("auth"), 3u);
    // Others are still served.
    NativeClient client(address, client_tls(), "gw-02", "secret-gw-02");
    auto m = message("sensor-200");
    client.send(as_frame(m));
    EXPECT_EQ(client.wait_ack(1).refused, 0u);
}

TEST_F(ServerTest, ForeignSourcesAreRefusedAndCounted) {
    start();
    NativeClient client(address, client_tls(), "gw-01", "secret-gw-01");
    auto mine = message("sensor-100"), theirs = message("sensor-200");
    client.send(as_frame(mine));
    client.send(as_frame(theirs));
    client.send(as_frame(theirs));
    Ack ack = client.wait_ack(3);
    EXPECT_EQ(ack.refused, 2u);
    EXPECT_EQ(sink.frames().size(), 1u);
    EXPECT_EQ(refused("source"), 2u);
}

TEST_F(ServerTest, ClientCertificateLogsIn) {
    start();
    NativeClient client(address, client_tls("gw-02"), "gw-02", "");
    auto m = message("sensor-200");
    client.send(as_frame(m));
    EXPECT_EQ(client.wait_ack(1).refused, 0u);
    EXPECT_EQ(read(sink.frames().at(0)).gateway, "gw-02");
    // The certificate is gw-02's: it cannot log in as gw-01, even with gw-01's token.
    EXPECT_THROW(NativeClient(address, client_tls("gw-02"), "gw-01", "secret-gw-01"), mh::Error);
    // A certificate from another CA fails the handshake.
    EXPECT_THROW(NativeClient(address, client_tls("stranger"), "gw-01", "secret-gw-01"), mh::Error);
    EXPECT_TRUE(wait_for([&] { return refused("certificate") == 1; }));
}

TEST_F(ServerTest, OversizedFramesAreRefusedBeforeTheyArrive) {
    ServerOptions options;
    options.max_message_bytes = 4096;
    start(options);
    NativeClient client(address, client_tls(), "gw-01", "secret-gw-01");
    auto big = message("sensor-100", "", "telemetry", 1 << 20);
    // Only the first 64 KiB go out: the segment table alone gives it away.
    client.send_bytes(std::span(big).first(64 << 10));
    EXPECT_THROW(client.wait_ack(1, 10'000), mh::Error);
    EXPECT_EQ(client.refusal(), "frame too large");
    EXPECT_EQ(refused("oversized"), 1u);
}

TEST_F(ServerTest, QuotaRefusesTheExcess) {
    gatekeeper.quotas["gw-01"] = Quota{10, 10, 0, 0, 0};
    start();
    NativeClient client(address, client_tls(), "gw-01", "secret-gw-01");
    auto m = message("sensor-100");
    for (int i = 0; i < 100; ++i) client.send(as_frame(m));
    Ack ack = client.wait_ack(100);
    EXPECT_GE(ack.refused, 80u);
    EXPECT_LE(ack.refused, 90u);
    EXPECT_EQ(refused("quota"), ack.refused);
    EXPECT_EQ(sink.frames().size(), 100 - ack.refused);
}

TEST_F(ServerTest, PerGatewayConnectionCap) {
    ServerOptions options;
    options.max_gateway_connections = 2;
    start(options);
    NativeClient a(address, client_tls(), "gw-01", "secret-gw-01");
    NativeClient b(address, client_tls(), "gw-01", "secret-gw-01");
    EXPECT_THROW(NativeClient(address, client_tls(), "gw-01", "secret-gw-01"), mh::Error);
    EXPECT_EQ(refused("gateway_connections"), 1u);
    NativeClient other(address, client_tls(), "gw-02", "secret-gw-02");  // another gateway is not affected
}

TEST_F(ServerTest, SilentConnectionsTimeOut) {
    ServerOptions options;
    options.handshake_timeout_ns = 300'000'000;
    start(options);
    // Connects and never says a word (slowloris).
    int fd = connect_to(address);
    EXPECT_TRUE(wait_for([&] { return refused("handshake_timeout") == 1; }));
    char byte;
    EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);  // closed by the endpoint
    ::close(fd);
    // Meanwhile a well-behaved gateway is served.
    NativeClient client(address, client_tls(), "gw-01", "secret-gw-01");
}

TEST_F(ServerTest, GarbageAfterTheHandshakeIsRefused) {
    start();
    NativeClient client(address, client_tls(), "gw-01", "secret-gw-01");
    std::vector<std::byte> garbage(64, std::byte{0xff});
    client.send_bytes(garbage);
    EXPECT_THROW(client.wait_ack(1, 10'000), mh::Error);
    EXPECT_EQ(refused("protocol"), 1u);
}

TEST_F(ServerTest, CommandsReachTheGatewayNowOrWhenItComes) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    wire::FdFrameReader commands(fds[0], &stop);
    start({}, &commands);
    NativeClient online(address, client_tls(), "gw-01", "secret-gw-01");
    auto command = message("sensor-100", "gw-01", "command");
    auto offline = message("sensor-200", "gw-02", "command");
    ASSERT_EQ(write(fds[1], offline.data(), offline.size()), static_cast<ssize_t>(offline.size()));
    ASSERT_EQ(write(fds[1], command.data(), command.size()), static_cast<ssize_t>(command.size()));
    auto got = online.wait_command(10'000);
    ASSERT_TRUE(got);
    EXPECT_EQ(read(*got).source, "sensor-100");
    NativeClient later(address, client_tls(), "gw-02", "secret-gw-02");
    auto queued = later.wait_command(10'000);
    ASSERT_TRUE(queued);
    EXPECT_EQ(read(*queued).source, "sensor-200");
    close(fds[1]);
    stop = true;
    thread.join();
    close(fds[0]);
}

// A message of `kind` with text fields (command tests).
std::vector<std::byte> with_fields(const std::string& kind, const std::string& gateway, const std::string& source,
                                   const std::vector<std::pair<std::string, std::string>>& texts) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    m.setKind(kind);
    m.setGateway(gateway);
    m.setSource(source);
    auto fields = m.initFields(static_cast<unsigned>(texts.size()));
    for (unsigned i = 0; i < texts.size(); ++i) {
        fields[i].setName(texts[i].first);
        fields[i].getValue().setText(texts[i].second);
    }
    std::vector<std::byte> out;
    wire::append_frame(builder, out);
    return out;
}

// The kind, gateway, source and fields (as text) of a frame.
std::map<std::string, std::string> fields_of(const std::vector<std::byte>& bytes) {
    auto words = test::to_words(bytes);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    auto m = reader.getRoot<schema::Message>();
    std::map<std::string, std::string> out{{"$kind", m.getKind()}, {"$gateway", m.getGateway()},
                                           {"$source", m.getSource()}};
    for (auto f : m.getFields()) {
        auto v = f.getValue();
        out[f.getName()] = v.isText() ? std::string(v.getText()) : v.isBool() ? (v.getBool() ? "true" : "false")
                                                                              : v.isInt() ? std::to_string(v.getInt()) : "?";
    }
    return out;
}

TEST_F(ServerTest, CommandLifecycleOverTheNativeProtocol) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    wire::FdFrameReader commands(fds[0], &stop);
    start({}, &commands);
    auto statuses = [&] {
        std::vector<std::map<std::string, std::string>> out;
        for (const auto& frame : sink.frames())
            if (auto f = fields_of(frame); f["$kind"] == "command-status") out.push_back(f);
        return out;
    };
    NativeClient client(address, client_tls(), "gw-01", "secret-gw-01");
    auto command = with_fields("command", "gw-01", "sensor-100", {{"command", "blink"}, {"correlation_id", "n-1"}});
    ASSERT_EQ(write(fds[1], command.data(), command.size()), static_cast<ssize_t>(command.size()));
    auto got = client.wait_command(10'000);
    ASSERT_TRUE(got);
    EXPECT_EQ(fields_of(*got)["correlation_id"], "n-1");  // carried in the native frame
    ASSERT_TRUE(wait_for([&] { return statuses().size() == 1; }));
    auto delivered = statuses()[0];
    EXPECT_EQ(delivered["status"], "delivered");
    EXPECT_EQ(delivered["protocol"], "native");
    EXPECT_EQ(delivered["correlation_id"], "n-1");
    EXPECT_EQ(delivered["command"], "blink");
    EXPECT_EQ(delivered["$gateway"], "gw-01");
    EXPECT_EQ(delivered["$source"], "sensor-100");

    // The device replies with a frame of kind command-reply: acknowledged, not ingested.
    auto reply = with_fields("command-reply", "", "sensor-100", {{"correlation_id", "n-1"}, {"result", "blinked"}});
    auto no_id = with_fields("command-reply", "", "sensor-100", {{"result", "?"}});
    auto foreign = with_fields("command-reply", "", "sensor-200", {{"correlation_id", "n-1"}});
    client.send(as_frame(no_id));
    client.send(as_frame(foreign));
    client.send(as_frame(reply));
    Ack ack = client.wait_ack(3);
    EXPECT_EQ(ack.refused, 2u);
    EXPECT_EQ(refused("malformed"), 1u);
    EXPECT_EQ(refused("source"), 1u);
    auto all = statuses();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[1]["status"], "acknowledged");
    EXPECT_EQ(all[1]["matched"], "true");
    EXPECT_EQ(all[1]["reply.result"], "blinked");
    EXPECT_EQ(all[1]["command"], "blink");
    for (const auto& frame : sink.frames()) EXPECT_NE(fields_of(frame)["$kind"], "command-reply");
    close(fds[1]);
    stop = true;
    thread.join();
    close(fds[0]);
}

// A bare MQTT client over TLS that never acknowledges what it receives.
class RawMqttClient {
public:
    RawMqttClient(const HostPort& address, std::shared_ptr<tls::Context> context)
        : m_fd(connect_to(address)), m_context(std::move(context)) {
        set_nonblocking(m_fd);
        m_tls = std::make_unique<tls::Session>(*m_context, m_fd, tls::Role::client);
        for (;;) {
            tls::Io io = m_tls->handshake();
            if (io == tls::Io::done) break;
            if (io != tls::Io::want_read && io != tls::Io::want_write) throw std::runtime_error("handshake failed");
            wait(io == tls::Io::want_read ? POLLIN : POLLOUT, 10'000);
        }
    }
    ~RawMqttClient() {
        m_tls.reset();  // no close_notify, no DISCONNECT: the connection just ends
        ::close(m_fd);
    }
    void send(std::string_view bytes) {
        while (!bytes.empty()) {
            tls::IoResult result = m_tls->write(std::as_bytes(std::span(bytes.data(), bytes.size())));
            if (result.status == tls::Io::done) bytes.remove_prefix(result.bytes);
            else if (result.status == tls::Io::want_read || result.status == tls::Io::want_write) wait(POLLOUT, 1000);
            else throw std::runtime_error("write failed");
        }
    }
    // Reads until `text` is among the bytes received; false after `timeout_ms`.
    bool wait_for(std::string_view text, int timeout_ms) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        std::byte buffer[4096];
        while (m_in.find(text) == std::string::npos) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            tls::IoResult result = m_tls->read(buffer);
            if (result.status == tls::Io::done) m_in.append(reinterpret_cast<const char*>(buffer), result.bytes);
            else if (result.status == tls::Io::want_read || result.status == tls::Io::want_write) wait(POLLIN, 100);
            else return false;
        }
        return true;
    }

private:
    void wait(short events, int timeout_ms) {
        pollfd p{m_fd, events, 0};
        poll(&p, 1, timeout_ms);
    }
    int m_fd;
    std::shared_ptr<tls::Context> m_context;
    std::unique_ptr<tls::Session> m_tls;
    std::string m_in;
};

TEST_F(ServerTest, AQos1CommandLostWithACleanMqttSessionIsDropped) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    wire::FdFrameReader commands(fds[0], &stop);
    ServerOptions options;
    options.mqtt = HostPort{"127.0.0.1", 0};
    start(options, &commands);
    std::string bound = server->bound().at(Protocol::mqtt);
    HostPort mqtt_address{"127.0.0.1", static_cast<uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1)))};
    {
        RawMqttClient client(mqtt_address, client_tls());
        std::string out;
        mqtt::Connect connect;
        connect.client_id = "raw";
        connect.username = "gw-01";
        connect.password = "secret-gw-01";
        mqtt::encode(out, connect);
        mqtt::Subscribe subscribe;
        subscribe.packet_id = 1;
        subscribe.topics.push_back({"commands/gw-01/#", mqtt::QoS::at_least_once});
        mqtt::encode(out, subscribe);
        client.send(out);
        const char suback[] = {char(0x90), 3, 0, 1, 1};
        ASSERT_TRUE(client.wait_for(std::string_view(suback, sizeof(suback)), 10'000));
        auto command = with_fields("command", "gw-01", "", {{"correlation_id", "m-1"}});
        ASSERT_EQ(write(fds[1], command.data(), command.size()), static_cast<ssize_t>(command.size()));
        ASSERT_TRUE(client.wait_for("m-1", 10'000));  // the PUBLISH came; no PUBACK goes back
    }
    auto dropped = [&] {
        for (const auto& frame : sink.frames())
            if (auto f = fields_of(frame); f["$kind"] == "command-status" && f["status"] == "dropped") return f;
        return std::map<std::string, std::string>{};
    };
    ASSERT_TRUE(wait_for([&] { return !dropped().empty(); }));
    auto status = dropped();
    EXPECT_EQ(status["correlation_id"], "m-1");
    EXPECT_EQ(status["protocol"], "mqtt");
    EXPECT_NE(status["reason"].find("PUBACK"), std::string::npos);
    for (const auto& frame : sink.frames())
        EXPECT_NE(fields_of(frame)["status"], "delivered");  // never acknowledged, never delivered
    close(fds[1]);
    stop = true;
    thread.join();
    close(fds[0]);
}

}  // namespace
