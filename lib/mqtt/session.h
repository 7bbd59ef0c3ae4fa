// The server side of one MQTT 3.1.1 connection, transport-free: the caller feeds it the
// bytes it received (after TLS), sends the bytes it produces, calls tick() at its deadline,
// and answers its questions through a SessionHandler. No sockets, no clocks of its own
// (the caller passes `now`), no threads: one ServerSession per connection, used from one
// thread.
//
//   class Gate : public mqtt::SessionHandler { ... };           // authentication, publishing
//   mqtt::ServerSession session(gate, options, now);
//   on readable:  session.receive(bytes, now);
//   then:         write session.output(); session.consume_output(written);
//   timer:        at session.deadline(), session.tick(now)
//   on EOF/error: session.peer_closed();
//   once session.closed() and output() is empty (flushed): close the socket.
//   commands:     session.deliver("commands/gw-1", payload, mqtt::QoS::at_least_once, tag);
//
// output() grows while the client does not read (acknowledgements, PINGRESPs, commands):
// stop reading the socket (calling receive()) while it is above a bound of the caller's, so
// that a client which never reads cannot make the server buffer without limit.
//
// What it does:
// - CONNECT must come first (anything else closes the connection), within
//   options.connect_timeout, and no larger than options.max_connect_bytes. MQTT 5 and 3.1
//   clients get CONNACK "unacceptable protocol version". authenticate() decides the
//   CONNACK code. A client id is required for a persistent session (clean_session = 0).
// - Keep-alive: a client that sends no packet for 1.5 x its keep-alive is disconnected.
// - PUBLISH QoS 0, 1 and 2 from the client go to on_publish(); PUBACK (QoS 1) or PUBREC
//   (QoS 2) is sent only after the handler accepted the message, either at once or, for a
//   deferred one, when the caller calls acknowledge(). Acknowledgements leave in the order
//   the publishes arrived. A QoS 2 message is passed on once; its PUBREL gets PUBCOMP.
// - SUBSCRIBE asks may_subscribe() per filter; UNSUBSCRIBE; PINGREQ; DISCONNECT.
// - deliver() sends a message (a command) to the client on a topic its subscriptions match,
//   at QoS 0 or 1 (2 is downgraded to 1). QoS 1 messages stay in flight until the client's
//   PUBACK (then on_delivered(tag)), at most options.max_inflight at once, the rest queued.
// - Persistent sessions (clean_session = 0): the subscriptions, messages in flight, queued
//   messages and QoS 2 state live in a SessionState that the caller keeps per client id
//   across connections; on reconnect, messages still in flight are sent again (DUP set).
// - Retained messages are not stored: the retain flag is passed to the handler, that is all.
#pragma once

#include "mqtt/packet.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::mqtt {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

constexpr size_t k_default_max_connect_bytes = 16 * 1024;
constexpr std::chrono::milliseconds k_default_connect_timeout{10'000};

struct SessionOptions {
    size_t max_packet_bytes = k_default_max_packet_bytes;    // any packet after CONNECT
    size_t max_connect_bytes = k_default_max_connect_bytes;  // before it: bounds unauthenticated buffering
    std::chrono::milliseconds connect_timeout = k_default_connect_timeout;
    uint16_t max_inflight = 32;        // QoS 1 deliveries sent and not yet acknowledged
    size_t max_queued = 1000;          // deliveries waiting for room in the in-flight window
    size_t max_subscriptions = 64;     // filters per session; more are refused in the SUBACK
    size_t max_pending_acks = 1024;    // deferred publishes not yet acknowledged, and QoS 2
                                       // messages not yet released (PUBREL), each
    size_t max_client_id_bytes = 256;  // longer ids get CONNACK "identifier rejected"
};

// Why a session ended. describe() gives a short text for logs; the caller counts by cause.
enum class CloseCause {
    none,                 // still open
    client_disconnect,    // the client sent DISCONNECT (graceful: no will)
    connection_lost,      // the caller reported the transport gone (peer_closed())
    protocol_error,       // a malformed packet or one out of place; parse_error() when malformed
    too_large,            // a packet over the size limit, refused from its fixed header
    unsupported_version,  // MQTT 5 or 3.1: CONNACK "unacceptable protocol version" was sent
    identifier_rejected,  // CONNACK "identifier rejected" was sent
    auth_failed,          // authenticate() refused: connack_code() says how
    connect_timeout,      // no CONNECT in time
    keep_alive_timeout,   // no packet within 1.5 x keep-alive
    publish_refused,      // on_publish() said PublishOutcome::refused
    over_quota,           // on_publish() said PublishOutcome::over_quota
    too_many_pending,     // more than max_pending_acks deferred publishes
    server_close,         // the caller's close()
    taken_over,           // the caller's close() for a newer connection with the same client id
};

const char* describe(CloseCause cause);

struct Subscription {
    std::string filter;
    QoS qos = QoS::at_most_once;  // granted
};

// What a persistent session keeps between connections (MQTT 3.1.1 section 4.1). The
// caller keeps one per client id (std::make_shared<SessionState>()) and hands it back from
// authenticate() when the client reconnects with clean_session = 0. Only one connection
// may use a state at a time: close the older ServerSession (close(CloseCause::taken_over),
// as [MQTT-3.1.4-2] asks) before returning the state for a new one. Not thread-safe, like the session.
class SessionState {
public:
    const std::vector<Subscription>& subscriptions() const { return m_subscriptions; }
    size_t inflight_count() const { return m_inflight.size(); }  // sent, awaiting PUBACK
    size_t queued_count() const { return m_queued.size(); }      // waiting to be sent
    bool used() const { return m_used; }  // a connection has had it: "session present"

private:
    friend class ServerSession;
    struct Outgoing {
        uint64_t tag = 0;
        std::string topic;
        std::string payload;
        uint16_t packet_id = 0;
    };
    std::vector<Subscription> m_subscriptions;
    std::deque<Outgoing> m_inflight;            // QoS 1, in send order
    std::deque<Outgoing> m_queued;              // QoS 1, waiting for the window
    std::vector<uint16_t> m_awaiting_pubrel;    // incoming QoS 2 ids answered with PUBREC
    uint16_t m_next_packet_id = 1;
    bool m_used = false;
};

// What the client asked for in CONNECT. Views valid during the call only.
struct ConnectRequest {
    std::string_view client_id;  // may be empty with clean_session
    std::optional<std::string_view> username;
    std::optional<std::string_view> password;  // binary
    bool clean_session = true;
    uint16_t keep_alive_s = 0;
    const Will* will = nullptr;
};

struct ConnectDecision {
    ConnectCode code = ConnectCode::accepted;  // anything else: that CONNACK, then close
    // For clean_session = 0: the client's stored state (a fresh one the first time). Left
    // null, the session is not persistent (it starts empty and is not kept). Ignored for
    // clean_session = 1, which always starts empty: the caller drops any stored state.
    std::shared_ptr<SessionState> state;
};

enum class PublishOutcome {
    accepted,    // taken: PUBACK/PUBREC now
    deferred,    // taken, not yet safe: PUBACK/PUBREC when the caller calls acknowledge(id)
    dropped,     // refused, but acknowledged so the client does not resend it forever
                 // (what 3.1.1 brokers do on an ACL denial; MQTT 3.1.1 has no negative ack)
    refused,     // refused, the connection is closed (CloseCause::publish_refused)
    over_quota,  // refused, the connection is closed (CloseCause::over_quota)
};

struct DisconnectInfo {
    CloseCause cause = CloseCause::none;
    // The client's last will when the end was not a DISCONNECT; views valid during the call.
    // Publishing it, or not, is the handler's business.
    const Will* will = nullptr;
};

enum class DeliverResult {
    sent,            // in output() (QoS 1: in flight until PUBACK)
    queued,          // the in-flight window is full: sent when an acknowledgement frees room
    not_connected,   // before CONNECT was accepted, or after the end
    not_subscribed,  // no subscription of the client matches the topic
    invalid_topic,   // see check_topic_name()
    queue_full,      // max_queued messages already waiting
};

// The caller's side: identity, authorization and where messages go. Callbacks may call the
// session's deliver() and close(), and must not call receive() or destroy the session.
class SessionHandler {
public:
    virtual ~SessionHandler() = default;

    // The CONNECT decision: accepted, bad_username_or_password, not_authorized,
    // server_unavailable, identifier_rejected.
    virtual ConnectDecision authenticate(const ConnectRequest& request) = 0;

    // The CONNACK "accepted" is in output(); a good moment to deliver what waits for the
    // client (a persistent session's subscriptions are in place already).
    virtual void on_connected(bool session_present) { (void)session_present; }

    // A PUBLISH from the client (topic valid per check_topic_name(); views valid during the
    // call only: copy what must outlive it).
    virtual PublishOutcome on_publish(const Publish& publish) = 0;

    // Whether the client may subscribe to `filter` (valid per check_topic_filter()), and at
    // which QoS (at most `requested`; more is lowered). nullopt refuses it (SUBACK 0x80).
    virtual std::optional<QoS> may_subscribe(std::string_view filter, QoS requested) = 0;

    // After the SUBACK, for each granted filter: deliver() now reaches the client on it.
    virtual void on_subscribed(std::string_view filter, QoS granted) { (void)filter, (void)granted; }

    virtual void on_unsubscribed(std::string_view filter) { (void)filter; }

    // The client acknowledged (PUBACK) the QoS 1 delivery passed with `tag`.
    virtual void on_delivered(uint64_t tag) { (void)tag; }

    // The end of a session whose CONNECT was accepted (not called otherwise), once.
    virtual void on_disconnect(const DisconnectInfo& info) { (void)info; }
};

class ServerSession {
public:
    enum class State { awaiting_connect, connected, closed };

    ServerSession(SessionHandler& handler, SessionOptions options, TimePoint now);
    ServerSession(const ServerSession&) = delete;
    ServerSession& operator=(const ServerSession&) = delete;

    // Bytes received from the client, in order, in pieces of any size. Every complete packet
    // is handled before it returns. Ignored once closed.
    void receive(std::string_view bytes, TimePoint now);

    // Bytes to send to the client, in order. Consume what was written; the rest stays.
    std::string_view output() const { return std::string_view(m_output).substr(m_output_start); }
    void consume_output(size_t bytes);

    // When tick() must be called next: the CONNECT timeout, then the keep-alive deadline
    // (1.5 x keep-alive after the last packet); TimePoint::max() when there is none.
    TimePoint deadline() const;
    // Closes the session (connect_timeout or keep_alive_timeout) when `now` is past deadline().
    void tick(TimePoint now);

    // The transport ended (EOF, reset, TLS error): the session ends as connection_lost.
    void peer_closed() { close(CloseCause::connection_lost); }
    // Ends the session (server_close or another cause). Output already produced stays
    // in output() for the caller to flush if it wants.
    void close(CloseCause cause = CloseCause::server_close);

    // Sends `payload` on `topic` if the client's subscriptions match it, at the lower of
    // `qos` and the granted QoS (at most 1). `tag` comes back in on_delivered() after the
    // client's PUBACK, also from a later connection of a persistent session.
    DeliverResult deliver(std::string_view topic, std::string_view payload, QoS qos,
                          uint64_t tag = 0);

    // Completes a publish for which on_publish() said deferred: its acknowledgement is sent
    // (after those of earlier publishes), also after the session closed: a publish taken
    // before the server closed it (over quota, a refused one after it) is acknowledged, so
    // the client does not send it again. Unknown ids are ignored.
    void acknowledge(uint16_t packet_id);

    State state() const { return m_state; }
    bool closed() const { return m_state == State::closed; }
    CloseCause close_cause() const { return m_close_cause; }
    std::optional<ParseError> parse_error() const { return m_parse_error; }  // protocol_error, too_large
    ConnectCode connack_code() const { return m_connack_code; }  // what the CONNACK said, if sent

    // From the accepted CONNECT.
    const std::string& client_id() const { return m_client_id; }
    const std::optional<std::string>& username() const { return m_username; }
    bool clean_session() const { return m_clean_session; }
    uint16_t keep_alive_s() const { return m_keep_alive_s; }
    // 1.5 x keep-alive, zero when the client asked for none.
    std::chrono::milliseconds keep_alive_timeout() const;

    const SessionState& session_state() const { return *m_session; }
    size_t pending_acks() const { return m_pending_acks.size(); }  // deferred, not yet acknowledged

private:
    struct PendingAck {
        uint16_t packet_id;
        QoS qos;
        bool done;
    };
    void handle(Packet& packet);
    void handle_connect(const Connect& connect);
    void handle_publish(const Publish& publish);
    void handle_puback(uint16_t packet_id);
    void handle_pubrel(uint16_t packet_id);
    void handle_subscribe(const Subscribe& subscribe);
    void handle_unsubscribe(const Unsubscribe& unsubscribe);
    void refuse_connect(ConnectCode code, CloseCause cause);
    void fail(CloseCause cause, std::optional<ParseError> error = std::nullopt);
    void send_acks();
    void fill_window();
    void send_inflight(const SessionState::Outgoing& message, bool dup);
    uint16_t next_packet_id();

    SessionHandler& m_handler;
    SessionOptions m_options;
    PacketReader m_reader;
    Packet m_packet;  // reused, so that SUBSCRIBE's vectors keep their capacity
    std::string m_output;
    size_t m_output_start = 0;
    State m_state = State::awaiting_connect;
    CloseCause m_close_cause = CloseCause::none;
    std::optional<ParseError> m_parse_error;
    ConnectCode m_connack_code = ConnectCode::accepted;
    TimePoint m_started;
    TimePoint m_last_packet;

    std::string m_client_id;
    std::optional<std::string> m_username;
    bool m_clean_session = true;
    uint16_t m_keep_alive_s = 0;
    std::optional<std::string> m_will_topic;
    std::string m_will_payload;
    Will m_will;

    std::shared_ptr<SessionState> m_session;
    std::deque<PendingAck> m_pending_acks;  // incoming QoS 1/2 publishes in arrival order
};

}  // namespace mh::mqtt
