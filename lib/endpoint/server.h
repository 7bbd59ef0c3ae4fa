// The endpoint's event loop: one I/O thread, epoll, a listener per protocol, TLS on
// every connection (plaintext only on loopback when asked), caps and timeouts, and one
// Ingest that every protocol hands its messages to. The output is written synchronously:
// when it is full the loop blocks, so no socket is read and nothing is dropped
// (back-pressure reaches the gateways through TCP). After each round of reads the output
// is flushed, and only then are acknowledgements sent (native acks, PUBACK, 202). Commands
// from the command input go to the gateways' connections or wait for them; what becomes of
// each is written to the same output as command-status messages (command_lifecycle.h).
#pragma once

#include "command/command.h"
#include "core/log.h"
#include "core/stop.h"
#include "endpoint/command_lifecycle.h"
#include "endpoint/gatekeeper.h"
#include "endpoint/ingest.h"
#include "endpoint/limits.h"
#include "endpoint/net.h"
#include "json/json_codec.h"
#include "metrics/metrics.h"
#include "tls/tls.h"
#include "wire/stream.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mh::endpoint {

constexpr size_t k_default_max_message_bytes = 256 << 10;  // 256 KiB
constexpr uint32_t k_default_max_connections = 20'000;
constexpr uint32_t k_default_max_gateway_connections = 16;
constexpr int64_t k_default_handshake_timeout_ns = 10'000'000'000;  // TLS and login
constexpr int64_t k_default_idle_timeout_ns = 300'000'000'000;
constexpr int64_t k_default_refusal_log_interval_ns = 10'000'000'000;
constexpr size_t k_default_max_pending_commands = 1000;  // per gateway
constexpr int64_t k_default_command_ttl_ns = 86'400'000'000'000;  // 24 h
constexpr size_t k_read_chunk_bytes = 64 << 10;
constexpr size_t k_read_budget_bytes = 1 << 20;  // per connection per round: fairness
// Batched acknowledgements (MQTT PUBACK): one write per this many messages at most, and no
// acknowledgement later than k_ack_delay_ns after its message was flushed to the output.
constexpr uint32_t k_ack_batch_messages = 16;
constexpr int64_t k_ack_delay_ns = 1'000'000;
constexpr int64_t k_command_expiry_sweep_ns = 1'000'000'000;  // queued commands are checked this often
// A lingering close (HTTP errors): after the response, the write side is shut and what the
// client still sends is read and discarded for at most this long or this much, so that the
// client reads the response instead of a connection reset.
constexpr int64_t k_linger_ns = 5'000'000'000;
constexpr size_t k_linger_max_bytes = 64 << 20;

enum class Protocol { native, mqtt, https };
std::string_view protocol_name(Protocol protocol);

struct ServerOptions {
    std::optional<HostPort> native, mqtt, https;
    bool insecure_loopback = false;  // plaintext listeners (loopback only)
    uint32_t max_connections = k_default_max_connections;
    uint32_t max_gateway_connections = k_default_max_gateway_connections;
    int64_t handshake_timeout_ns = k_default_handshake_timeout_ns;
    int64_t idle_timeout_ns = k_default_idle_timeout_ns;
    int64_t refusal_log_interval_ns = k_default_refusal_log_interval_ns;
    size_t max_message_bytes = k_default_max_message_bytes;
    size_t max_pending_commands = k_default_max_pending_commands;
    std::string command_queue;  // a directory: commands for absent gateways wait in LMDB there
    int64_t command_ttl_ns = k_default_command_ttl_ns;  // undelivered commands expire after this
    uint64_t seed = 0;  // of the id generator; 0 = from the clock
};

class Server;
class CommandQueue;
class Connection;

// One protocol's side of one connection. The server feeds it bytes and tells it when the
// output was flushed (so it may acknowledge what it ingested).
class Session {
public:
    virtual ~Session() = default;
    // Handles what arrived; returns how many bytes it used. What is left (an incomplete
    // packet) is offered again, with more, after the next read. `data` starts word aligned.
    virtual size_t receive(std::span<const std::byte> data) = 0;
    // Everything ingested before this call is in the output: acknowledge it.
    virtual void flushed() {}
    // A command for this connection's gateway; false when this session cannot take it now.
    // A session that takes it tells the connection when it is delivered (command_delivered,
    // or command_sending and later command_transport_acknowledged).
    virtual bool deliver(const wire::Frame&, const command::Ref&) { return false; }
    // Called about four times a second: protocol deadlines (MQTT keep-alive).
    virtual void tick(int64_t /*monotonic_ns*/) {}
};

enum class Linger { no, yes };

// What a Session sees of its connection.
class Connection {
public:
    Connection(Server& server, uint64_t id, int fd, Protocol protocol, std::string peer);
    ~Connection();

    void send(std::span<const std::byte> bytes);
    void send(std::string_view text) { send(std::as_bytes(std::span(text.data(), text.size()))); }
    // Closes once what was sent is written; with Linger::yes, after a lingering close.
    void close(std::string_view why, Linger linger = Linger::no);
    bool closing() const { return m_closing; }

    // Log in: refusals are counted and logged; false when refused (the session closes).
    bool login_token(std::string_view gateway, std::string_view token);
    // Whether `token` proves this connection's gateway (refusals counted); after a login.
    bool verify_token(std::string_view token);
    void count_delivered(uint64_t commands);
    // The gateway proven by the client certificate, if one was presented.
    GatewayState* gateway() const { return m_gateway; }
    bool has_certificate() const { return m_certificate.has_value(); }

    // Through the one ingest path; refusals are counted and logged under the gateway.
    Verdict ingest_frame(const wire::Frame& frame, Overrides overrides = {});
    Verdict ingest_json(std::string_view text, Overrides overrides = {}, std::string* error = nullptr);
    // Ask for flushed() once the output has been flushed. `batch`: for one more message whose
    // client keeps several in flight (MQTT QoS 1), the acknowledgement may wait a little
    // (k_ack_delay_ns at most) so that one write acknowledges many; the number waited for
    // adapts to the client's window (it drops to what a client sent before it fell silent).
    void notify_when_flushed(bool batch = false);
    // Counts and logs a refusal under this connection's gateway (or peer address).
    void refuse(std::string_view why, std::string_view what, uint64_t count = 1);
    // Commands queued for this gateway while it was away, delivered through the session now
    // (the expired ones are dropped, with their status).
    void take_queued_commands();
    // The same through `deliver` (false: stop, the command stays queued); returns how many.
    size_t take_queued_commands(const std::function<bool(const wire::Frame&, const command::Ref&)>& deliver);
    // The command lifecycle (lib/endpoint/command_lifecycle.h), for sessions.
    void command_delivered(const command::Ref& ref);    // written to this connection now
    uint64_t command_sending(const command::Ref& ref);  // delivered at command_transport_acknowledged(tag)
    void command_transport_acknowledged(uint64_t tag);  // MQTT PUBACK
    void command_not_sent(uint64_t tag);
    void command_lost(uint64_t tag, std::string_view reason);  // in flight when the session ended
    // A device's reply (a message with correlation_id), for `source` (empty: the reply's
    // own), checked as telemetry is (the source, the quota): it becomes an acknowledged status.
    Verdict reply_frame(const wire::Frame& frame, std::string_view source = {}, std::string* error = nullptr);
    Verdict reply_json(std::string_view text, std::string_view source = {}, std::string* error = nullptr);
    // Seconds until the gateway's quota would allow `messages` of `bytes` (HTTP Retry-After).
    double quota_wait_seconds(double messages, double bytes) const;

    size_t max_message_bytes() const;
    const std::string& peer() const { return m_peer; }
    std::string_view who() const;
    int64_t now_ns() const;  // wall clock of this round

private:
    friend class Server;
    enum class State { handshake, open };
    bool finish_login(const Login& login);

    Server& m_server;
    uint64_t m_id;
    int m_fd;
    Protocol m_protocol;
    std::string m_peer;
    State m_state = State::handshake;
    std::unique_ptr<tls::Session> m_tls;
    std::unique_ptr<Session> m_session;
    std::optional<tls::Fingerprint> m_certificate;
    GatewayState* m_gateway = nullptr;
    // Input: word-aligned storage so frames are read in place.
    std::unique_ptr<capnp::word[]> m_in;
    size_t m_in_capacity = 0, m_in_size = 0;
    std::vector<std::byte> m_out;
    size_t m_out_offset = 0;
    int64_t m_deadline_ns = 0;  // handshake and login must be done by then (monotonic)
    int64_t m_last_activity_ns = 0;
    uint32_t m_events = 0;        // what epoll watches
    bool m_read_wants_write = false;
    bool m_closing = false;
    bool m_want_flushed = false;
    uint32_t m_unacked = 0;           // batched messages waiting for flushed()
    uint32_t m_ack_batch = k_ack_batch_messages;  // how many make flushed() come at once
    int64_t m_first_unacked_ns = 0;   // monotonic: when the oldest of them was taken in
    bool m_quick_ack = false;         // messages came since the last TCP_QUICKACK
    bool m_ready = false;         // in the ready list: more to read without waiting
    bool m_has_output = false;    // in the list of connections to write out this round
    bool m_linger = false;        // close lingering (close(..., Linger::yes))
    bool m_lingering = false;     // write side shut, reading to discard
    bool m_drained = false;       // the peer closed (or sent too much): close now
    size_t m_linger_bytes = 0;
    int64_t m_linger_deadline_ns = 0;
};

class Server {
public:
    // `tls` may be null only with insecure_loopback. `commands` may be null.
    Server(const ServerOptions& options, std::shared_ptr<tls::Context> tls, const Gatekeeper& gatekeeper,
           wire::FrameSink& output, wire::FrameSource* commands, metrics::Registry& metrics, Log& log,
           const StopFlag& stop);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // The real addresses listened on (protocol -> "127.0.0.1:41234").
    const std::map<Protocol, std::string>& bound() const { return m_bound; }

    // Runs until the stop flag is set; `reload` (SIGHUP) is checked every round and
    // `on_reload` called when it was set.
    void run(std::atomic<bool>* reload = nullptr, const std::function<void()>& on_reload = {});

    // Swapped in by a reload; live connections keep their TLS session and identity.
    void set_tls(std::shared_ptr<tls::Context> tls) { m_tls = std::move(tls); }
    void set_gatekeeper(const Gatekeeper& gatekeeper);

    Refusals& refusals() { return m_refusals; }
    size_t connection_count() const { return m_connections.size(); }

private:
    friend class Connection;
    struct ListenerEntry {
        Protocol protocol;
        int fd;
    };

    void accept_all(const ListenerEntry& listener);
    void on_event(Connection& c, uint32_t events);
    void handshake(Connection& c);
    void read_some(Connection& c);
    void process_input(Connection& c);
    void process_scratch(Connection& c, size_t bytes);
    void reserve_input(Connection& c, size_t bytes);
    void write_out(Connection& c);
    void update_events(Connection& c);
    void close_now(Connection& c, std::string_view why);
    void sweep();
    void tick();
    void poll_commands();
    void acknowledge();
    void route_command(const wire::Frame& frame);
    void expire_commands();
    // A device's reply through `gateway` (see Connection::reply_frame); `why` says why not.
    Verdict reply(GatewayState& gateway, const wire::Frame& frame, std::string_view source, std::string& why);
    void command_status(const command::Ref& ref, command::Status status, std::string_view reason);
    void start_linger(Connection& c);
    void drain(Connection& c);
    std::unique_ptr<Session> make_session(Connection& c);
    GatewayState& gateway_state(const std::string& id);
    void configure(GatewayState& state);
    int64_t monotonic_now() const { return m_mono_ns; }

    ServerOptions m_options;
    std::shared_ptr<tls::Context> m_tls;
    const Gatekeeper* m_gatekeeper;
    wire::FrameSink& m_output;
    wire::FrameSource* m_commands;
    Log& m_log;
    const StopFlag& m_stop;
    Refusals m_refusals;
    Ingest m_ingest;
    metrics::Counter& m_accepted_connections;
    metrics::Counter& m_commands_delivered;
    metrics::Counter& m_commands_queued;
    metrics::Counter& m_commands_expired;
    metrics::Counter& m_commands_dropped;
    std::unique_ptr<CommandQueue> m_queue;  // with --command-queue
    CommandLifecycle m_lifecycle;
    JsonDecoder m_reply_decoder;
    std::vector<std::byte> m_reply_frame;
    int64_t m_next_expiry_ns = 0;
    bool m_stopped = false;  // run() returned: the output has had its last flush
    std::unique_ptr<capnp::word[]> m_scratch;  // reads land here first
    int m_epoll = -1;
    std::vector<ListenerEntry> m_listeners;
    std::map<Protocol, std::string> m_bound;
    std::unordered_map<uint64_t, std::unique_ptr<Connection>> m_connections;
    std::map<std::string, std::unique_ptr<GatewayState>, std::less<>> m_gateways;
    std::vector<uint64_t> m_ready;        // connections with more to read now
    std::vector<uint64_t> m_want_flushed; // connections to acknowledge after the flush
    std::vector<uint64_t> m_to_close;
    std::vector<uint64_t> m_has_output;
    uint64_t m_next_id = 16;  // ids below are listeners
    int64_t m_mono_ns = 0;
    int64_t m_wall_ns = 0;
    int64_t m_next_tick_ns = 0;
};

}  // namespace mh::endpoint
