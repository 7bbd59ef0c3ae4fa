#include "endpoint/server.h"

#include "core/error.h"
#include "endpoint/command_queue.h"
#include "endpoint/http_gateway.h"
#include "endpoint/mqtt_gateway.h"
#include "endpoint/native.h"
#include "message/time.h"
#include "wire/frame.h"

#include <arpa/inet.h>
#include <capnp/serialize.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace mh::endpoint {

namespace {
constexpr int k_listen_backlog = 1024;
constexpr int k_max_events = 256;
constexpr int64_t k_tick_ns = 250'000'000;
constexpr int k_idle_wait_ms = 250;
constexpr int k_commands_wait_ms = 5;  // how often a command input is looked at when all is quiet
constexpr size_t k_input_slack_bytes = 64 << 10;  // over the largest message: headers, a partial next one
constexpr size_t k_keep_buffer_bytes = 64 << 10;  // an idle connection's input buffer above this is freed

int64_t monotonic_clock_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string peer_text(const sockaddr_storage& storage) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (storage.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        return fmt::format("{}:{}", host, ntohs(in->sin_port));
    }
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
}
}  // namespace

std::string_view protocol_name(Protocol protocol) {
    switch (protocol) {
        case Protocol::native: return "native";
        case Protocol::mqtt: return "mqtt";
        case Protocol::https: return "https";
    }
    return "?";
}

// ---------------------------------------------------------------------------------------
// Connection

Connection::Connection(Server& server, uint64_t id, int fd, Protocol protocol, std::string peer)
    : m_server(server), m_id(id), m_fd(fd), m_protocol(protocol), m_peer(std::move(peer)) {}

Connection::~Connection() {
    m_session.reset();
    m_tls.reset();
    if (m_fd >= 0) ::close(m_fd);
}

void Connection::send(std::span<const std::byte> bytes) {
    if (m_closing && m_out.empty()) return;
    m_out.insert(m_out.end(), bytes.begin(), bytes.end());
    if (!m_has_output) {
        m_has_output = true;
        m_server.m_has_output.push_back(m_id);
    }
}

void Connection::close(std::string_view why, Linger linger) {
    if (m_closing) return;
    m_closing = true;
    m_linger = linger == Linger::yes;
    m_server.m_log.debug("{} ({}): closing: {}", m_peer, who(), why);
    m_server.m_to_close.push_back(m_id);
}

std::string_view Connection::who() const { return m_gateway ? std::string_view(m_gateway->id) : std::string_view(m_peer); }

int64_t Connection::now_ns() const { return m_server.m_wall_ns; }

size_t Connection::max_message_bytes() const { return m_server.m_options.max_message_bytes; }

void Connection::refuse(std::string_view why, std::string_view what, uint64_t count) {
    m_server.m_refusals.refuse(why, who(), what, count);
}

bool Connection::finish_login(const Login& login) {
    if (!login.gateway) {
        refuse(login.reason, fmt::format("login from {} refused: {}", m_peer, login.refusal));
        return false;
    }
    if (m_gateway) {
        if (m_gateway->id == *login.gateway) return true;  // the certificate said the same
        refuse(reason::auth, fmt::format("{} presents a certificate of {} but logs in as {}", m_peer, m_gateway->id,
                                         *login.gateway));
        return false;
    }
    GatewayState& state = m_server.gateway_state(*login.gateway);
    uint32_t cap = m_server.m_gatekeeper->quota(state.id).max_connections;
    if (cap == 0) cap = m_server.m_options.max_gateway_connections;
    if (state.connections >= cap) {
        m_server.m_refusals.refuse(reason::gateway_connections, state.id,
                                   fmt::format("already {} connections (the cap), {} refused", state.connections, m_peer));
        return false;
    }
    ++state.connections;
    m_gateway = &state;
    m_server.m_log.debug("{}: {} logged in over {}", state.id, m_peer, protocol_name(m_protocol));
    return true;
}

bool Connection::login_token(std::string_view gateway, std::string_view token) {
    return finish_login(m_server.m_gatekeeper->check_token(gateway, token, m_server.m_wall_ns));
}

bool Connection::verify_token(std::string_view token) {
    Login login = m_server.m_gatekeeper->check_token("", token, m_server.m_wall_ns);
    if (login.gateway && m_gateway && *login.gateway == m_gateway->id) return true;
    refuse(reason::auth, login.gateway ? fmt::format("a token of {} on a connection of {}", *login.gateway, who())
                                       : fmt::format("login from {} refused: {}", m_peer, login.refusal));
    return false;
}

void Connection::count_delivered(uint64_t commands) { m_server.m_commands_delivered.add(commands); }

Verdict Connection::ingest_frame(const wire::Frame& frame, Overrides overrides) {
    Verdict verdict = m_server.m_ingest.frame(*m_gateway, frame, m_server.m_wall_ns, overrides);
    if (verdict != Verdict::accepted)
        refuse(verdict_reason(verdict), fmt::format("a message of {} bytes over {}", frame.byte_count(),
                                                    protocol_name(m_protocol)));
    return verdict;
}

Verdict Connection::ingest_json(std::string_view text, Overrides overrides, std::string* error) {
    std::string why;
    Verdict verdict = m_server.m_ingest.json(*m_gateway, text, m_server.m_wall_ns, overrides, &why);
    if (verdict != Verdict::accepted) {
        if (verdict == Verdict::malformed && !why.empty())
            refuse(reason::malformed, why);
        else if (verdict != Verdict::source && verdict != Verdict::quota)
            refuse(verdict_reason(verdict), fmt::format("a JSON message of {} bytes", text.size()));
        else
            refuse(verdict_reason(verdict), overrides.source.empty() ? std::string("a JSON message")
                                                                     : fmt::format("source {}", overrides.source));
    }
    if (error) *error = why;
    return verdict;
}

void Connection::notify_when_flushed(bool batch) {
    if (batch) {
        if (m_unacked++ == 0) m_first_unacked_ns = m_server.m_mono_ns;
        m_quick_ack = true;
    }
    if (m_want_flushed) return;
    m_want_flushed = true;
    m_server.m_want_flushed.push_back(m_id);
}

double Connection::quota_wait_seconds(double messages, double bytes) const {
    if (!m_gateway) return 0;
    return std::max(m_gateway->messages.wait_seconds(messages, m_server.m_wall_ns),
                    m_gateway->bytes.wait_seconds(bytes, m_server.m_wall_ns));
}

void Connection::take_queued_commands() {
    take_queued_commands(
        [&](const wire::Frame& frame, const command::Ref& ref) { return m_session->deliver(frame, ref); });
}

namespace {
wire::Frame frame_of(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / sizeof(capnp::word)};
}
constexpr std::string_view k_expired_away = "its expiry passed while the gateway was away";
}  // namespace

size_t Connection::take_queued_commands(const std::function<bool(const wire::Frame&, const command::Ref&)>& deliver) {
    if (!m_gateway) return 0;
    size_t delivered = 0;
    auto expired = [&](store::Bytes bytes) {
        m_server.command_status(command::describe(frame_of(bytes)), command::Status::expired, k_expired_away);
        m_server.m_commands_expired.add();
    };
    if (m_server.m_queue) {
        delivered = m_server.m_queue->take(
            m_gateway->id, m_server.m_wall_ns,
            [&](store::Bytes bytes) {
                wire::Frame frame = frame_of(bytes);
                return deliver(frame, command::describe(frame));
            },
            expired);
    }
    auto& queue = m_gateway->commands;
    while (!queue.empty()) {
        const auto& queued = queue.front();
        if (queued.expires_ns < m_server.m_wall_ns) {
            expired(queued.frame);
        } else {
            wire::Frame frame = frame_of(queued.frame);
            if (!deliver(frame, command::describe(frame))) break;
            ++delivered;
        }
        queue.pop_front();
    }
    m_server.m_commands_delivered.add(delivered);
    return delivered;
}

void Connection::command_delivered(const command::Ref& ref) {
    m_server.m_lifecycle.delivered(ref, protocol_name(m_protocol), m_server.m_wall_ns);
}

uint64_t Connection::command_sending(const command::Ref& ref) {
    return m_server.m_lifecycle.sending(ref, protocol_name(m_protocol));
}

void Connection::command_transport_acknowledged(uint64_t tag) {
    m_server.m_lifecycle.transport_acknowledged(tag, m_server.m_wall_ns);
}

void Connection::command_not_sent(uint64_t tag) { m_server.m_lifecycle.not_sent(tag); }

void Connection::command_lost(uint64_t tag, std::string_view reason) {
    if (m_server.m_stopped) return;  // shutting down: nothing more reaches the output
    m_server.m_lifecycle.lost(tag, m_server.m_wall_ns, reason);
}

Verdict Connection::reply_json(std::string_view text, std::string_view source, std::string* error) {
    if (text.size() > max_message_bytes()) {
        refuse(reason::oversized, fmt::format("a reply of {} bytes", text.size()));
        return Verdict::oversized;
    }
    auto& decoded = m_server.m_reply_frame;
    decoded.clear();
    if (auto why = m_server.m_reply_decoder.decode(text, decoded)) {
        refuse(reason::malformed, fmt::format("a reply: {}", *why));
        if (error) *error = *why;
        return Verdict::malformed;
    }
    return reply_frame(frame_of(decoded), source, error);
}

Verdict Connection::reply_frame(const wire::Frame& frame, std::string_view source, std::string* error) {
    std::string why;
    Verdict verdict = m_server.reply(*m_gateway, frame, source, why);
    if (verdict != Verdict::accepted) refuse(verdict_reason(verdict), fmt::format("a reply: {}", why));
    if (error) *error = why;
    return verdict;
}

// ---------------------------------------------------------------------------------------
// Server

Server::Server(const ServerOptions& options, std::shared_ptr<tls::Context> tls, const Gatekeeper& gatekeeper,
               wire::FrameSink& output, wire::FrameSource* commands, metrics::Registry& metrics, Log& log,
               const StopFlag& stop)
    : m_options(options),
      m_tls(std::move(tls)),
      m_gatekeeper(&gatekeeper),
      m_output(output),
      m_commands(commands),
      m_log(log),
      m_stop(stop),
      m_refusals(metrics, log, options.refusal_log_interval_ns),
      m_ingest(output, gatekeeper, wire::FrameLimits{options.max_message_bytes}, metrics,
               options.seed ? options.seed : static_cast<uint64_t>(wall_clock_ns())),
      m_accepted_connections(metrics.counter("mh_endpoint_connections_total", "Connections accepted")),
      m_commands_delivered(metrics.counter("mh_endpoint_commands_delivered_total", "Commands sent to gateways")),
      m_commands_queued(metrics.counter("mh_endpoint_commands_queued_total",
                                        "Commands kept for a gateway that was not connected")),
      m_commands_expired(metrics.counter("mh_endpoint_commands_expired_total",
                                         "Queued commands dropped because their time to live passed")),
      m_commands_dropped(metrics.counter("mh_endpoint_commands_dropped_total",
                                         "Queued commands dropped because the gateway's queue was full")),
      m_lifecycle(output, metrics, (options.seed ? options.seed : static_cast<uint64_t>(wall_clock_ns())) ^ 0x636f6d6dULL) {
    // Replies that come as messages of their own kind (native frames, HTTPS /v1/messages).
    m_ingest.divert(std::string(command::k_reply_kind), [this](GatewayState& gateway, const wire::Frame& frame) {
        std::string why;
        return reply(gateway, frame, {}, why);
    });
    if (!m_options.command_queue.empty()) {
        m_queue = std::make_unique<CommandQueue>(m_options.command_queue, m_options.max_pending_commands);
        m_lifecycle.keep_in(*m_queue);  // replies to commands delivered before a restart still match
    }
    if (!m_tls && !m_options.insecure_loopback)
        throw Error(ExitCode::usage, "TLS needs --cert and --key (plaintext only with --insecure-loopback)");
    m_scratch = std::make_unique<capnp::word[]>(k_read_chunk_bytes / sizeof(capnp::word));
    m_epoll = epoll_create1(EPOLL_CLOEXEC);
    if (m_epoll < 0) throw Error(ExitCode::software, errno_text("epoll_create1", errno));
    auto add_listener = [&](Protocol protocol, const std::optional<HostPort>& address) {
        if (!address) return;
        if (!m_tls && !is_loopback(*address))
            throw Error(ExitCode::usage,
                        fmt::format("--{} {}:{}: plaintext (--insecure-loopback) listens on 127.0.0.1 only",
                                    protocol_name(protocol), address->host, address->port));
        Listener listener = listen_on(*address, k_listen_backlog);
        uint64_t id = m_listeners.size();
        m_listeners.push_back({protocol, listener.fd});
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.u64 = id;
        epoll_ctl(m_epoll, EPOLL_CTL_ADD, listener.fd, &event);
        m_bound[protocol] = listener.bound;
        if (!m_tls) m_log.warn("{} is plaintext (--insecure-loopback): for tests and demos only", protocol_name(protocol));
        m_log.info("listening on {} {}", protocol_name(protocol), listener.bound);
    };
    add_listener(Protocol::native, m_options.native);
    add_listener(Protocol::mqtt, m_options.mqtt);
    add_listener(Protocol::https, m_options.https);
    if (m_listeners.empty()) throw Error(ExitCode::usage, "nothing to listen on: give --native, --mqtt or --https");
}

Server::~Server() {
    m_connections.clear();
    for (auto& listener : m_listeners) ::close(listener.fd);
    if (m_epoll >= 0) ::close(m_epoll);
}

void Server::set_gatekeeper(const Gatekeeper& gatekeeper) {
    m_gatekeeper = &gatekeeper;
    m_ingest.set_gatekeeper(gatekeeper);
    for (auto& [id, state] : m_gateways) configure(*state);
}

void Server::configure(GatewayState& state) {
    Quota quota = m_gatekeeper->quota(state.id);
    // By default a second's worth of burst: short spikes pass, sustained excess does not.
    // The byte bucket always holds one largest message, or that message could never pass.
    double burst_messages = quota.burst_messages > 0 ? quota.burst_messages : quota.messages_per_second;
    double burst_bytes = quota.burst_bytes > 0 ? quota.burst_bytes : quota.bytes_per_second;
    state.messages.configure(quota.messages_per_second, burst_messages, m_wall_ns);
    state.bytes.configure(quota.bytes_per_second,
                          std::max<double>(burst_bytes, static_cast<double>(m_options.max_message_bytes)), m_wall_ns);
    state.may_publish.clear();
}

GatewayState& Server::gateway_state(const std::string& id) {
    auto it = m_gateways.find(id);
    if (it != m_gateways.end()) return *it->second;
    auto state = std::make_unique<GatewayState>();
    state->id = id;
    configure(*state);
    return *m_gateways.emplace(id, std::move(state)).first->second;
}

std::unique_ptr<Session> Server::make_session(Connection& c) {
    switch (c.m_protocol) {
        case Protocol::native: return std::make_unique<NativeSession>(c);
        case Protocol::mqtt: return std::make_unique<MqttGatewaySession>(c, m_options.handshake_timeout_ns);
        case Protocol::https: return std::make_unique<HttpGatewaySession>(c);
    }
    return nullptr;
}

void Server::accept_all(const ListenerEntry& listener) {
    for (;;) {
        sockaddr_storage storage{};
        socklen_t length = sizeof(storage);
        int fd = accept4(listener.fd, reinterpret_cast<sockaddr*>(&storage), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                m_log.warn("accept on {} failed: {}", protocol_name(listener.protocol), std::strerror(errno));
            return;
        }
        std::string peer = peer_text(storage);
        if (m_connections.size() >= m_options.max_connections) {
            m_refusals.refuse(reason::connections, "endpoint",
                              fmt::format("{} connections open (the cap): {} refused", m_connections.size(), peer));
            ::close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        uint64_t id = m_next_id++;
        auto connection = std::make_unique<Connection>(*this, id, fd, listener.protocol, std::move(peer));
        Connection& c = *connection;
        c.m_deadline_ns = m_mono_ns + m_options.handshake_timeout_ns;
        c.m_last_activity_ns = m_mono_ns;
        c.m_session = make_session(c);
        if (!c.m_session) {
            m_log.warn("{} is not served yet", protocol_name(listener.protocol));
            continue;
        }
        if (m_tls) c.m_tls = std::make_unique<tls::Session>(*m_tls, fd, tls::Role::server);
        else c.m_state = Connection::State::open;
        m_connections.emplace(id, std::move(connection));
        m_accepted_connections.add();
        epoll_event event{};
        event.events = EPOLLIN | EPOLLRDHUP;
        event.data.u64 = id;
        c.m_events = event.events;
        epoll_ctl(m_epoll, EPOLL_CTL_ADD, fd, &event);
    }
}

void Server::handshake(Connection& c) {
    tls::Io io = c.m_tls->handshake();
    switch (io) {
        case tls::Io::done: break;
        case tls::Io::want_read:
        case tls::Io::want_write:
            c.m_read_wants_write = io == tls::Io::want_write;
            update_events(c);
            return;
        case tls::Io::closed:
            c.close("closed during the TLS handshake");
            return;
        case tls::Io::failed: {
            bool certificate = c.m_tls->error().find("certificate") != std::string::npos;
            c.refuse(certificate ? reason::certificate : reason::protocol,
                     fmt::format("TLS handshake with {} failed: {}", c.m_peer, c.m_tls->error()));
            c.close("TLS handshake failed");
            return;
        }
    }
    c.m_state = Connection::State::open;
    c.m_read_wants_write = false;
    update_events(c);
    if (auto fingerprint = c.m_tls->peer_fingerprint()) {
        c.m_certificate = fingerprint;
        if (!c.finish_login(m_gatekeeper->check_certificate(*fingerprint))) {
            c.close("certificate not registered");
            return;
        }
    }
}

void Server::on_event(Connection& c, uint32_t events) {
    if (c.m_closing) {
        if (c.m_lingering && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) drain(c);
        if (events & EPOLLOUT) write_out(c);
        return;
    }
    if (c.m_state == Connection::State::handshake) {
        handshake(c);
        if (c.m_state == Connection::State::handshake || c.m_closing) return;
    }
    if (events & EPOLLOUT) write_out(c);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) || c.m_read_wants_write) read_some(c);
}

void Server::read_some(Connection& c) {
    // One record buffer for the whole burst, given back at its end (idle connections hold none).
    struct HeldBuffers {
        tls::Session* tls;
        explicit HeldBuffers(tls::Session* session) : tls(session) {
            if (tls) tls->hold_buffers(true);
        }
        ~HeldBuffers() {
            if (tls) tls->hold_buffers(false);
        }
    } held(c.m_state == Connection::State::open ? c.m_tls.get() : nullptr);
    size_t budget = k_read_budget_bytes;
    size_t limit = m_options.max_message_bytes + k_input_slack_bytes;
    c.m_read_wants_write = false;
    while (!c.m_closing) {
        if (budget == 0) {
            if (!c.m_ready) {
                c.m_ready = true;
                m_ready.push_back(c.m_id);
            }
            return;
        }
        // With nothing held back, read into the shared scratch buffer: a connection keeps
        // input storage only while it holds part of a message (idle ones hold none).
        bool scratch = c.m_in_size == 0;
        if (!scratch && c.m_in_capacity - c.m_in_size < k_read_chunk_bytes) reserve_input(c, c.m_in_size + k_read_chunk_bytes);
        std::span<std::byte> space =
            scratch ? std::span<std::byte>(reinterpret_cast<std::byte*>(m_scratch.get()), k_read_chunk_bytes)
                    : std::span<std::byte>(reinterpret_cast<std::byte*>(c.m_in.get()) + c.m_in_size,
                                           std::min(k_read_chunk_bytes, c.m_in_capacity - c.m_in_size));
        // Record after record until the space is full or the next would wait: a client that
        // sends a small TLS record per message (mosquitto_pub) has them handled as one chunk,
        // and the error queue is cleared once, before the first (nothing runs in between).
        size_t got = 0;
        tls::Io next = tls::Io::done;
        do {
            if (c.m_tls) {
                tls::IoResult result = c.m_tls->read(space.subspan(got), got == 0);
                next = result.status;
                got += result.bytes;
            } else {
                ssize_t n = ::recv(c.m_fd, space.data(), space.size(), 0);
                if (n > 0) got = static_cast<size_t>(n);
                else if (n == 0) next = tls::Io::closed;
                else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) next = tls::Io::want_read;
                else next = tls::Io::closed;
                break;  // one recv takes all there is
            }
        } while (next == tls::Io::done && got < space.size());
        if (got > 0) {
            budget -= std::min(budget, got);
            c.m_last_activity_ns = m_mono_ns;
            if (scratch) {
                process_scratch(c, got);
            } else {
                c.m_in_size += got;
                process_input(c);
            }
            if (c.m_in_size > limit && !c.m_closing) {
                c.refuse(reason::oversized, fmt::format("more than {} bytes without a complete message",
                                                        m_options.max_message_bytes));
                c.close("message too large");
            }
        }
        switch (next) {
            case tls::Io::done: continue;
            case tls::Io::want_read: return;
            case tls::Io::want_write:
                c.m_read_wants_write = true;
                update_events(c);
                return;
            case tls::Io::closed:
                c.close("closed by the peer");
                return;
            case tls::Io::failed:
                c.refuse(reason::protocol, fmt::format("TLS error from {}: {}", c.m_peer, c.m_tls->error()));
                c.close("TLS error");
                return;
        }
    }
}

void Server::reserve_input(Connection& c, size_t bytes) {
    if (c.m_in_capacity >= bytes) return;
    size_t want = std::max(c.m_in_capacity * 2, bytes);
    want = (want + sizeof(capnp::word) - 1) / sizeof(capnp::word) * sizeof(capnp::word);
    auto grown = std::make_unique<capnp::word[]>(want / sizeof(capnp::word));
    if (c.m_in_size) std::memcpy(grown.get(), c.m_in.get(), c.m_in_size);
    c.m_in = std::move(grown);
    c.m_in_capacity = want;
}

void Server::process_scratch(Connection& c, size_t bytes) {
    auto* base = reinterpret_cast<const std::byte*>(m_scratch.get());
    size_t at = 0;
    // In place while what is left starts word aligned (frames are whole words; a hello
    // line or an HTTP head is not, and what follows it moves to aligned storage).
    while (at < bytes && !c.m_closing && at % sizeof(capnp::word) == 0) {
        size_t used = c.m_session->receive(std::span<const std::byte>(base + at, bytes - at));
        if (used == 0) break;
        at += std::min(used, bytes - at);
    }
    if (at < bytes && !c.m_closing) {
        reserve_input(c, bytes - at);
        std::memcpy(c.m_in.get(), base + at, bytes - at);
        c.m_in_size = bytes - at;
        process_input(c);
    }
}

void Server::process_input(Connection& c) {
    auto* base = reinterpret_cast<std::byte*>(c.m_in.get());
    while (c.m_in_size > 0 && !c.m_closing) {
        size_t used = c.m_session->receive(std::span<const std::byte>(base, c.m_in_size));
        if (used == 0) break;
        used = std::min(used, c.m_in_size);
        // Keep what is left at the start: the next frame is then word aligned again.
        std::memmove(base, base + used, c.m_in_size - used);
        c.m_in_size -= used;
    }
}

void Server::write_out(Connection& c) {
    bool first = true;
    while (c.m_out_offset < c.m_out.size()) {
        std::span<const std::byte> pending(c.m_out.data() + c.m_out_offset, c.m_out.size() - c.m_out_offset);
        tls::IoResult result;
        if (c.m_tls) {
            result = c.m_tls->write(pending, first);
            first = false;
        } else {
            ssize_t n = ::send(c.m_fd, pending.data(), pending.size(), MSG_NOSIGNAL);
            if (n >= 0) result = {tls::Io::done, static_cast<size_t>(n)};
            else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) result = {tls::Io::want_write, 0};
            else result = {tls::Io::closed, 0};
        }
        if (result.status == tls::Io::done) {
            c.m_out_offset += result.bytes;
            continue;
        }
        if (result.status == tls::Io::want_write || result.status == tls::Io::want_read) {
            update_events(c);
            return;
        }
        // The peer is gone: nothing more can be written.
        c.m_out.clear();
        c.m_out_offset = 0;
        if (!c.m_closing) c.close("write failed");
        update_events(c);
        return;
    }
    c.m_out.clear();
    c.m_out_offset = 0;
    if (c.m_out.capacity() > k_keep_buffer_bytes) c.m_out.shrink_to_fit();
    update_events(c);
}

void Server::update_events(Connection& c) {
    uint32_t events = EPOLLRDHUP;
    if (!c.m_closing || c.m_lingering) events |= EPOLLIN;
    if (c.m_out_offset < c.m_out.size() || c.m_read_wants_write) events |= EPOLLOUT;
    if (events == c.m_events) return;
    epoll_event event{};
    event.events = events;
    event.data.u64 = c.m_id;
    epoll_ctl(m_epoll, EPOLL_CTL_MOD, c.m_fd, &event);
    c.m_events = events;
}

void Server::close_now(Connection& c, std::string_view why) {
    (void)why;
    if (c.m_tls && c.m_state == Connection::State::open && !c.m_lingering) c.m_tls->shutdown();
    if (c.m_gateway && c.m_gateway->connections > 0) --c.m_gateway->connections;
    epoll_ctl(m_epoll, EPOLL_CTL_DEL, c.m_fd, nullptr);
    m_connections.erase(c.m_id);
}

// Closes the connections that asked for it, once what they had to say is written (or
// could not be: a peer that does not read is not waited for past its deadline).
void Server::sweep() {
    std::vector<uint64_t> pending;
    for (uint64_t id : m_to_close) {
        auto it = m_connections.find(id);
        if (it == m_connections.end()) continue;
        Connection& c = *it->second;
        if (c.m_out_offset < c.m_out.size()) write_out(c);
        if (c.m_out_offset < c.m_out.size() && m_mono_ns < c.m_deadline_ns + m_options.handshake_timeout_ns) {
            pending.push_back(id);
            continue;
        }
        if (c.m_linger && c.m_out_offset >= c.m_out.size()) {
            if (!c.m_lingering) start_linger(c);
            if (!c.m_drained && m_mono_ns < c.m_linger_deadline_ns) {
                pending.push_back(id);
                continue;
            }
        }
        close_now(c, "closed");
    }
    m_to_close = std::move(pending);
}

// The response is out: say so (TLS close_notify, FIN) and read what the client still sends,
// so that closing does not reset the connection under a response it has not read yet.
void Server::start_linger(Connection& c) {
    if (c.m_tls && c.m_state == Connection::State::open) c.m_tls->shutdown();
    ::shutdown(c.m_fd, SHUT_WR);
    c.m_lingering = true;
    c.m_linger_deadline_ns = m_mono_ns + k_linger_ns;
    update_events(c);
    drain(c);
}

void Server::drain(Connection& c) {
    auto* buffer = reinterpret_cast<std::byte*>(m_scratch.get());
    while (!c.m_drained) {
        ssize_t n = ::recv(c.m_fd, buffer, k_read_chunk_bytes, 0);
        if (n > 0) {
            c.m_linger_bytes += static_cast<size_t>(n);
            if (c.m_linger_bytes > k_linger_max_bytes) c.m_drained = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        c.m_drained = true;  // end of stream or an error: nothing more to wait for
    }
}

void Server::tick() {
    for (auto& [id, connection] : m_connections) {
        Connection& c = *connection;
        if (c.m_closing) continue;
        bool logged_in = c.m_state == Connection::State::open && c.m_gateway;
        if (!logged_in && m_mono_ns > c.m_deadline_ns) {
            c.refuse(reason::handshake_timeout,
                     fmt::format("{} did not finish the {} within {} s", c.m_peer,
                                 c.m_state == Connection::State::handshake ? "TLS handshake" : "login",
                                 m_options.handshake_timeout_ns / k_ns_per_second));
            c.close("handshake timeout");
            continue;
        }
        if (m_mono_ns - c.m_last_activity_ns > m_options.idle_timeout_ns) {
            c.refuse(reason::idle_timeout, fmt::format("{} silent for {} s", c.m_peer,
                                                       (m_mono_ns - c.m_last_activity_ns) / k_ns_per_second));
            c.close("idle timeout");
            continue;
        }
        if (c.m_session && logged_in) c.m_session->tick(m_mono_ns);
        // Connections that held part of a message give their input buffer back once idle.
        if (c.m_in_size == 0 && c.m_in_capacity > 0 && m_mono_ns - c.m_last_activity_ns > k_tick_ns) {
            c.m_in.reset();
            c.m_in_capacity = 0;
        }
    }
}

void Server::poll_commands() {
    if (!m_commands) return;
    wire::Frame frame;
    for (int i = 0; i < 1024; ++i) {
        wire::Next next = m_commands->next(wire::Wait::no, frame);
        if (next == wire::Next::frame) {
            route_command(frame);
            continue;
        }
        if (next == wire::Next::end || next == wire::Next::broken) {
            if (next == wire::Next::broken) m_log.warn("the command input broke: {}", m_commands->error());
            else m_log.info("the command input ended");
            m_commands = nullptr;
        }
        return;
    }
}

void Server::command_status(const command::Ref& ref, command::Status status, std::string_view reason) {
    command::StatusDetail detail;
    detail.reason = reason;
    m_lifecycle.emit(ref, status, m_wall_ns, detail);
}

namespace {
constexpr std::string_view k_dropped_full = "the gateway's command queue was full (--max-pending-commands)";
}

void Server::route_command(const wire::Frame& frame) {
    command::Prepared p = command::prepare(frame, m_wall_ns, m_options.command_ttl_ns,
                                           wire::FrameLimits{m_options.max_message_bytes}, m_lifecycle.ids());
    if (p.control) return;  // barriers of the stream the commands came in
    // Refusals are logged under the gateway only when it is a known one: the names in
    // commands for unknown gateways must not grow the per-gateway log state.
    std::string_view who = "commands";
    if (p.refusal.empty()) {
        switch (m_gatekeeper->command_access(p.ref.gateway)) {
            case CommandAccess::allowed: break;
            case CommandAccess::unknown_gateway: p.refusal = "unknown gateway: not in the registry"; break;
            case CommandAccess::not_allowed:
                p.refusal = "the gateway's registry entry does not allow commands";
                who = p.ref.gateway;
                break;
        }
    }
    if (!p.refusal.empty()) {
        m_refusals.refuse(reason::commands, who, fmt::format("a command refused: {}", p.refusal));
        command_status(p.ref, command::Status::refused, p.refusal);
        return;
    }
    if (p.expires_ns < m_wall_ns) {
        m_commands_expired.add();
        command_status(p.ref, command::Status::expired, "its expiry had passed when it arrived");
        return;
    }
    wire::Frame ready = frame_of(p.frame);
    GatewayState& state = gateway_state(p.ref.gateway);
    for (auto& [id, connection] : m_connections) {
        Connection& c = *connection;
        if (c.m_gateway != &state || c.m_closing || !c.m_session) continue;
        if (c.m_session->deliver(ready, p.ref)) {
            m_commands_delivered.add();
            if (c.m_out_offset < c.m_out.size()) write_out(c);
            return;
        }
    }
    if (p.expires_ns <= m_wall_ns) {  // a time to live of 0: now or never
        m_commands_expired.add();
        command_status(p.ref, command::Status::expired, "the gateway was not connected before its expiry");
        return;
    }
    auto dropped_one = [&](std::span<const std::byte> bytes) {
        m_commands_dropped.add();
        m_refusals.refuse(reason::commands, state.id, "the gateway's command queue is full; the oldest is dropped");
        command_status(command::describe(frame_of(bytes)), command::Status::dropped, k_dropped_full);
    };
    if (m_queue) {
        m_queue->push(state.id, p.frame, p.expires_ns, dropped_one);
    } else {
        if (state.commands.size() >= m_options.max_pending_commands) {
            dropped_one(state.commands.front().frame);
            state.commands.pop_front();
        }
        state.commands.push_back({p.expires_ns, std::move(p.frame)});
    }
    m_commands_queued.add();
    command::StatusDetail detail;
    detail.expires_ns = p.expires_ns;
    m_lifecycle.emit(p.ref, command::Status::queued, m_wall_ns, detail);
}

Verdict Server::reply(GatewayState& gateway, const wire::Frame& frame, std::string_view source, std::string& why) {
    wire::FrameLimits limits{m_options.max_message_bytes};
    if (frame.byte_count() > limits.max_frame_bytes) {
        why = fmt::format("{} bytes, over the limit", frame.byte_count());
        return Verdict::oversized;
    }
    if (auto garbled = wire::check_frame(frame, limits)) {
        why = *garbled;
        return Verdict::malformed;
    }
    capnp::FlatArrayMessageReader message(kj::arrayPtr(frame.words, frame.word_count), wire::reader_options(limits));
    auto reply = message.getRoot<schema::Message>();
    if (source.empty()) source = std::string_view(reply.getSource().cStr(), reply.getSource().size());
    if (!source.empty() && !m_gatekeeper->may_publish(gateway.id, source)) {
        why = fmt::format("source {} is not one of this gateway's", source);
        return Verdict::source;
    }
    if (!gateway.messages.take(1, m_wall_ns) || !gateway.bytes.take(static_cast<double>(frame.byte_count()), m_wall_ns)) {
        why = "over quota";
        return Verdict::quota;
    }
    if (auto refusal = m_lifecycle.reply(gateway.id, source, reply, m_wall_ns)) {
        why = *refusal;
        return Verdict::malformed;
    }
    return Verdict::accepted;
}

// Queued commands whose expiry passed: dropped, each with its status.
void Server::expire_commands() {
    auto expired = [&](std::span<const std::byte> bytes) {
        m_commands_expired.add();
        command_status(command::describe(frame_of(bytes)), command::Status::expired, k_expired_away);
    };
    for (auto& [id, state] : m_gateways) {
        auto& queue = state->commands;
        for (auto it = queue.begin(); it != queue.end();) {
            if (it->expires_ns < m_wall_ns) {
                expired(it->frame);
                it = queue.erase(it);
            } else {
                ++it;
            }
        }
    }
    if (m_queue) m_queue->expire(m_wall_ns, expired);
}

// Calls flushed() on the connections that asked for it; the output is flushed. A connection
// with batched acknowledgements waits until enough messages (its batch) are in or the oldest
// has waited k_ack_delay_ns: a client with several messages in flight then gets one write
// for many instead of one per round. A client that fell silent before its batch was full
// shows its window: the batch shrinks to it (and grows again when more come in a round).
void Server::acknowledge() {
    if (m_want_flushed.empty()) return;
    std::vector<uint64_t> want;
    want.swap(m_want_flushed);
    for (uint64_t id : want) {
        auto it = m_connections.find(id);
        if (it == m_connections.end()) continue;
        Connection& c = *it->second;
        if (c.m_unacked > 0 && !c.m_closing) {
            if (c.m_unacked < c.m_ack_batch) {
                if (m_mono_ns - c.m_first_unacked_ns < k_ack_delay_ns) {
                    // The TCP acknowledgement goes now, not with the reply we hold back: a
                    // client that waits for it before sending more (Nagle) sends the rest.
                    if (c.m_quick_ack) {
                        int one = 1;
                        setsockopt(c.m_fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
                        c.m_quick_ack = false;
                    }
                    m_want_flushed.push_back(id);
                    continue;
                }
                c.m_ack_batch = c.m_unacked;
            } else if (c.m_unacked > c.m_ack_batch) {
                c.m_ack_batch = std::min(c.m_unacked, k_ack_batch_messages);
            }
        }
        c.m_unacked = 0;
        c.m_want_flushed = false;
        c.m_session->flushed();
    }
}

void Server::run(std::atomic<bool>* reload, const std::function<void()>& on_reload) {
    epoll_event events[k_max_events];
    m_mono_ns = monotonic_clock_ns();
    m_wall_ns = wall_clock_ns();
    m_next_tick_ns = m_mono_ns + k_tick_ns;
    while (!m_stop.load(std::memory_order_relaxed)) {
        if (reload && reload->exchange(false) && on_reload) on_reload();
        int timeout = !m_ready.empty() ? 0 : m_commands ? k_commands_wait_ms : k_idle_wait_ms;
        if (timeout > 0 && !m_want_flushed.empty()) timeout = static_cast<int>((k_ack_delay_ns + 999'999) / 1'000'000);
        int n = epoll_wait(m_epoll, events, k_max_events, timeout);
        if (n < 0 && errno != EINTR) throw Error(ExitCode::software, errno_text("epoll_wait", errno));
        m_mono_ns = monotonic_clock_ns();
        m_wall_ns = wall_clock_ns();
        for (int i = 0; i < n; ++i) {
            uint64_t id = events[i].data.u64;
            if (id < m_listeners.size()) {
                accept_all(m_listeners[id]);
                continue;
            }
            auto it = m_connections.find(id);
            if (it != m_connections.end()) on_event(*it->second, events[i].events);
        }
        // Connections that had more to read than one round's budget.
        if (!m_ready.empty()) {
            std::vector<uint64_t> ready;
            ready.swap(m_ready);
            for (uint64_t id : ready) {
                auto it = m_connections.find(id);
                if (it == m_connections.end()) continue;
                it->second->m_ready = false;
                read_some(*it->second);
            }
        }
        poll_commands();
        // Acknowledge only what the output has: flush first.
        m_ingest.flush();
        m_lifecycle.flush();
        acknowledge();
        if (!m_has_output.empty()) {
            std::vector<uint64_t> has_output;
            has_output.swap(m_has_output);
            for (uint64_t id : has_output) {
                auto it = m_connections.find(id);
                if (it == m_connections.end()) continue;
                it->second->m_has_output = false;
                if (!(it->second->m_events & EPOLLOUT)) write_out(*it->second);
            }
        }
        if (m_mono_ns >= m_next_tick_ns) {
            tick();
            m_next_tick_ns = m_mono_ns + k_tick_ns;
            if (m_wall_ns >= m_next_expiry_ns) {
                expire_commands();
                m_next_expiry_ns = m_wall_ns + k_command_expiry_sweep_ns;
            }
        }
        // Statuses written after the flush above (deliveries, PUBACKs, expiries).
        m_lifecycle.flush();
        sweep();
    }
    m_ingest.flush();
    m_lifecycle.flush();
    m_output.flush();
    for (auto& [id, connection] : m_connections)
        if (connection->m_session && !connection->m_closing) connection->m_session->flushed();
    for (auto& [id, connection] : m_connections) write_out(*connection);
    m_stopped = true;
    m_log.info("stopping: {} connections closed", m_connections.size());
}

}  // namespace mh::endpoint
