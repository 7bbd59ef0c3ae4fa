#include "endpoint/native.h"

#include "command/command.h"
#include "core/error.h"
#include "message/time.h"

#include <fmt/format.h>
#include <capnp/serialize.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace mh::endpoint {

namespace {
constexpr size_t k_client_batch_bytes = 256 << 10;

void put_u32(std::vector<std::byte>& out, uint32_t value) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
}
uint32_t get_u32(const std::byte* p) {
    uint32_t value = 0;
    for (int i = 3; i >= 0; --i) value = value << 8 | std::to_integer<uint32_t>(p[i]);
    return value;
}
uint64_t get_u64(const std::byte* p) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; --i) value = value << 8 | std::to_integer<uint64_t>(p[i]);
    return value;
}
void put_u64(std::byte* p, uint64_t value) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(value >> (8 * i));
}
std::span<const std::byte> text_bytes(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }
size_t padded(size_t bytes) { return (bytes + 7) / 8 * 8; }
}  // namespace

void append_record(std::vector<std::byte>& out, RecordType type, std::span<const std::byte> payload) {
    put_u32(out, static_cast<uint32_t>(type));
    put_u32(out, static_cast<uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    out.resize(out.size() + padded(payload.size()) - payload.size(), std::byte{0});
}

// ---------------------------------------------------------------------------------------
// NativeSession

void NativeSession::send_record(RecordType type, std::span<const std::byte> payload) {
    m_record.clear();
    append_record(m_record, type, payload);
    m_connection.send(m_record);
}

void NativeSession::refuse_and_close(std::string_view why) {
    send_record(RecordType::refused, text_bytes(why));
    m_connection.close(why);
}

size_t NativeSession::hello(std::span<const std::byte> data) {
    auto text = std::string_view(reinterpret_cast<const char*>(data.data()), std::min(data.size(), k_max_hello_bytes));
    size_t newline = text.find('\n');
    if (newline == std::string_view::npos) {
        if (data.size() >= k_max_hello_bytes) {
            m_connection.refuse(reason::protocol, fmt::format("{}: no hello line", m_connection.peer()));
            refuse_and_close("expected a hello line: MH1 <gateway> [<token>]");
        }
        return 0;
    }
    std::string_view line = text.substr(0, newline);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::vector<std::string_view> words;
    for (size_t at = 0; at <= line.size();) {
        size_t space = line.find(' ', at);
        if (space == std::string_view::npos) space = line.size();
        if (space > at) words.push_back(line.substr(at, space - at));
        at = space + 1;
    }
    if (words.size() < 2 || words.size() > 3 || words[0] != k_native_magic) {
        m_connection.refuse(reason::protocol, fmt::format("{}: a bad hello line", m_connection.peer()));
        refuse_and_close("expected a hello line: MH1 <gateway> [<token>]");
        return data.size();
    }
    bool ok;
    if (words.size() == 3) {
        ok = m_connection.login_token(words[1], words[2]);
    } else if (m_connection.gateway()) {
        ok = m_connection.gateway()->id == words[1];
        if (!ok)
            m_connection.refuse(reason::auth, fmt::format("{}: the certificate is {}'s, the hello says {}",
                                                          m_connection.peer(), m_connection.gateway()->id, words[1]));
    } else {
        m_connection.refuse(reason::auth, fmt::format("{}: no token and no client certificate", m_connection.peer()));
        ok = false;
    }
    if (!ok) {
        refuse_and_close("login refused");
        return data.size();
    }
    m_logged_in = true;
    send_record(RecordType::welcome, text_bytes(m_connection.gateway()->id));
    m_connection.take_queued_commands();
    return newline + 1;
}

size_t NativeSession::receive(std::span<const std::byte> data) {
    if (!m_logged_in) return hello(data);
    wire::FrameLimits limits{m_connection.max_message_bytes()};
    size_t used = 0;
    uint64_t before = m_handled;
    while (used < data.size() && !m_connection.closing()) {
        auto rest = data.subspan(used);
        wire::FrameScan scan = wire::scan_frame(rest, limits);
        if (scan.status == wire::ScanStatus::incomplete) break;
        if (scan.status == wire::ScanStatus::too_large) {
            // Refused before it is buffered whole; the stream cannot be followed past it.
            m_connection.refuse(reason::oversized, fmt::format("a frame of {} bytes (the limit is {})",
                                                               scan.frame_bytes, limits.max_frame_bytes));
            ++m_handled;
            ++m_refused;
            refuse_and_close("frame too large");
            return data.size();
        }
        if (scan.status == wire::ScanStatus::bad_segments) {
            m_connection.refuse(reason::protocol, "bytes that are not a frame");
            refuse_and_close("not a frame");
            return data.size();
        }
        wire::Frame frame{reinterpret_cast<const capnp::word*>(rest.data()), scan.frame_bytes / sizeof(capnp::word)};
        if (m_connection.ingest_frame(frame) != Verdict::accepted) ++m_refused;
        ++m_handled;
        used += scan.frame_bytes;
    }
    if (m_handled != before) m_connection.notify_when_flushed();
    return used;
}

void NativeSession::flushed() {
    if (m_handled == m_acked) return;
    std::byte payload[16];
    put_u64(payload, m_handled);
    put_u64(payload + 8, m_refused);
    send_record(RecordType::ack, payload);
    m_acked = m_handled;
}

bool NativeSession::deliver(const wire::Frame& frame, const command::Ref& ref) {
    if (!m_logged_in) return false;
    send_record(RecordType::command, frame.bytes());
    m_connection.command_delivered(ref);
    return true;
}

// ---------------------------------------------------------------------------------------
// NativeClient

NativeClient::NativeClient(const HostPort& address, std::shared_ptr<tls::Context> tls, const std::string& gateway,
                           const std::string& token)
    : m_fd(connect_to(address)), m_context(std::move(tls)) {
    set_nonblocking(m_fd);
    int buffer = 4 << 20;
    setsockopt(m_fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
    if (m_context) {
        m_tls = std::make_unique<tls::Session>(*m_context, m_fd, tls::Role::client);
        for (;;) {
            tls::Io io = m_tls->handshake();
            if (io == tls::Io::done) break;
            if (io != tls::Io::want_read && io != tls::Io::want_write) {
                std::string error = m_tls->error();
                ::close(m_fd);
                throw Error(ExitCode::unavailable, fmt::format("TLS handshake with {}:{} failed: {}", address.host,
                                                               address.port, error));
            }
            pollfd p{m_fd, static_cast<short>(io == tls::Io::want_read ? POLLIN : POLLOUT), 0};
            poll(&p, 1, 10'000);
        }
    }
    std::string hello = fmt::format("{} {}{}{}\n", k_native_magic, gateway, token.empty() ? "" : " ", token);
    write_all(text_bytes(hello));
    while (!m_welcomed && m_refusal.empty())
        if (!read_records(30'000)) break;
    if (!m_welcomed) {
        ::close(m_fd);
        m_fd = -1;
        throw Error(ExitCode::unavailable,
                    fmt::format("{}:{} refused gateway {}: {}", address.host, address.port, gateway,
                                m_refusal.empty() ? std::string("no answer") : m_refusal));
    }
}

NativeClient::~NativeClient() {
    if (m_tls) m_tls->shutdown();
    m_tls.reset();
    if (m_fd >= 0) ::close(m_fd);
}

void NativeClient::send(const wire::Frame& frame) {
    auto bytes = frame.bytes();
    m_out.insert(m_out.end(), bytes.begin(), bytes.end());
    ++m_sent;
    if (m_out.size() >= k_client_batch_bytes) flush();
}

void NativeClient::send_bytes(std::span<const std::byte> bytes) {
    m_out.insert(m_out.end(), bytes.begin(), bytes.end());
}

void NativeClient::flush() {
    if (m_out.empty()) return;
    write_all(m_out);
    m_out.clear();
}

size_t NativeClient::raw_read(std::span<std::byte> into, int timeout_ms) {
    for (;;) {
        tls::IoResult result;
        if (m_tls) {
            result = m_tls->read(into);
        } else {
            ssize_t n = ::recv(m_fd, into.data(), into.size(), 0);
            if (n > 0) result = {tls::Io::done, static_cast<size_t>(n)};
            else if (n == 0) result = {tls::Io::closed, 0};
            else if (errno == EAGAIN || errno == EINTR) result = {tls::Io::want_read, 0};
            else result = {tls::Io::closed, 0};
        }
        if (result.status == tls::Io::done) return result.bytes;
        if (result.status == tls::Io::closed || result.status == tls::Io::failed)
            throw Error(ExitCode::unavailable, m_refusal.empty() ? std::string("the endpoint closed the connection")
                                                                 : "the endpoint refused: " + m_refusal);
        if (timeout_ms == 0) return 0;
        pollfd p{m_fd, static_cast<short>(result.status == tls::Io::want_write ? POLLOUT : POLLIN), 0};
        if (poll(&p, 1, timeout_ms) == 0) return 0;
    }
}

void NativeClient::raw_write(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
        tls::IoResult result;
        if (m_tls) {
            result = m_tls->write(bytes);
        } else {
            ssize_t n = ::send(m_fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n >= 0) result = {tls::Io::done, static_cast<size_t>(n)};
            else if (errno == EAGAIN || errno == EINTR) result = {tls::Io::want_write, 0};
            else result = {tls::Io::closed, 0};
        }
        if (result.status == tls::Io::done) {
            bytes = bytes.subspan(result.bytes);
            continue;
        }
        if (result.status == tls::Io::closed || result.status == tls::Io::failed) {
            read_records(0);  // the reason, if the endpoint said one
            throw Error(ExitCode::unavailable, m_refusal.empty() ? std::string("the endpoint closed the connection")
                                                                 : "the endpoint refused: " + m_refusal);
        }
        // While the endpoint cannot take more, take its acknowledgements so neither side stalls.
        read_records(0);
        pollfd p{m_fd, static_cast<short>(result.status == tls::Io::want_read ? POLLIN : POLLOUT), 0};
        poll(&p, 1, 100);
    }
}

void NativeClient::write_all(std::span<const std::byte> bytes) { raw_write(bytes); }

bool NativeClient::read_records(int timeout_ms) {
    std::byte buffer[16 << 10];
    size_t got = raw_read(buffer, timeout_ms);
    if (got == 0) return false;
    m_in.insert(m_in.end(), buffer, buffer + got);
    size_t at = 0;
    while (m_in.size() - at >= k_record_header_bytes) {
        uint32_t type = get_u32(m_in.data() + at);
        uint32_t length = get_u32(m_in.data() + at + 4);
        size_t total = k_record_header_bytes + padded(length);
        if (m_in.size() - at < total) break;
        const std::byte* payload = m_in.data() + at + k_record_header_bytes;
        switch (static_cast<RecordType>(type)) {
            case RecordType::welcome: m_welcomed = true; break;
            case RecordType::refused: m_refusal.assign(reinterpret_cast<const char*>(payload), length); break;
            case RecordType::ack:
                if (length >= 16) m_ack = {get_u64(payload), get_u64(payload + 8)};
                break;
            case RecordType::command: m_commands.emplace_back(payload, payload + length); break;
        }
        at += total;
    }
    m_in.erase(m_in.begin(), m_in.begin() + static_cast<ptrdiff_t>(at));
    return true;
}

Ack NativeClient::wait_ack(uint64_t handled, int timeout_ms) {
    flush();
    while (m_ack.handled < handled) {
        if (!read_records(timeout_ms))
            throw Error(ExitCode::unavailable,
                        fmt::format("no acknowledgement within {} ms ({} of {} acknowledged)", timeout_ms,
                                    m_ack.handled, handled));
    }
    return m_ack;
}

std::optional<std::vector<std::byte>> NativeClient::wait_command(int timeout_ms) {
    flush();
    while (m_commands.empty())
        if (!read_records(timeout_ms)) return std::nullopt;
    auto command = std::move(m_commands.front());
    m_commands.erase(m_commands.begin());
    return command;
}

std::vector<std::vector<std::byte>> NativeClient::take_commands() {
    while (read_records(0)) {
    }
    return std::exchange(m_commands, {});
}

}  // namespace mh::endpoint

namespace mh::endpoint {

std::pair<bool, HostPort> parse_connect_url(std::string_view url) {
    bool tls;
    if (url.starts_with("tls://")) tls = true;
    else if (url.starts_with("tcp://")) tls = false;
    else
        throw Error(ExitCode::usage, fmt::format("--connect '{}': expected tls://HOST:PORT (or tcp://HOST:PORT for "
                                                 "an endpoint with --insecure-loopback)", url));
    return {tls, parse_host_port(url.substr(6), "--connect")};
}

std::map<std::string, std::string> read_token_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw Error(ExitCode::config, fmt::format("cannot read the token file '{}'", path));
    std::map<std::string, std::string> tokens;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        std::istringstream words(line);
        std::string gateway, token;
        if (!(words >> gateway) || gateway.starts_with('#')) continue;
        if (!(words >> token))
            throw Error(ExitCode::config, fmt::format("{}:{}: expected GATEWAY TOKEN", path, number));
        tokens[gateway] = token;
    }
    return tokens;
}

GatewaysSink::GatewaysSink(const GatewayLinks& links) : m_links(links) {
    std::tie(m_tls, m_address) = parse_connect_url(links.address);
    if (m_tls) m_context = tls::Context::client({links.ca_file, links.cert_file, links.key_file});
}

NativeClient& GatewaysSink::client(std::string_view gateway) {
    if (m_last && gateway == m_last_gateway) return *m_last;
    auto it = m_clients.find(gateway);
    if (it == m_clients.end()) {
        std::string token;
        if (auto t = m_links.tokens.find(std::string(gateway)); t != m_links.tokens.end()) token = t->second;
        else if (m_links.cert_file.empty())
            throw Error(ExitCode::usage, fmt::format("no token for gateway '{}' (give --token {}=TOKEN, --tokens FILE "
                                                     "or a client certificate)", gateway, gateway));
        it = m_clients.emplace(std::string(gateway),
                               std::make_unique<NativeClient>(m_address, m_context, std::string(gateway), token))
                 .first;
    }
    m_last_gateway = gateway;
    m_last = it->second.get();
    return *m_last;
}

void GatewaysSink::write(const wire::Frame& frame) {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
    auto gateway = reader.getRoot<schema::Message>().getGateway();
    client(std::string_view(gateway.cStr(), gateway.size())).send(frame);
}

void GatewaysSink::flush() {
    for (auto& [gateway, client] : m_clients) {
        // Taken either way, so commands nobody answers do not pile up.
        auto commands = client->take_commands();
        if (m_links.answer_commands)
            for (const auto& command : commands) answer(*client, gateway, command);
        client->flush();
    }
}

void GatewaysSink::answer(NativeClient& client, std::string_view gateway, const std::vector<std::byte>& command) {
    // Copied into words: the record's payload need not be aligned for a reader.
    std::vector<capnp::word> words(command.size() / sizeof(capnp::word));
    std::memcpy(words.data(), command.data(), words.size() * sizeof(capnp::word));
    wire::Frame frame{words.data(), words.size()};
    if (wire::check_frame(frame, {})) {
        if (m_links.log) m_links.log->warn("{}: a command that is not a frame, not answered", gateway);
        return;
    }
    command::Ref ref = command::describe(frame);
    if (m_links.log)
        m_links.log->info("{}: command {}{}{} (correlation_id {}): answered", gateway,
                          ref.name.empty() ? "(unnamed)" : ref.name, ref.source.empty() ? "" : " for ",
                          ref.source, ref.correlation_id);
    capnp::MallocMessageBuilder builder;
    auto reply = builder.initRoot<schema::Message>();
    reply.setTime(wall_clock_ns());
    reply.setSource(ref.source);
    reply.setGateway(std::string(gateway));
    reply.setKind(std::string(command::k_reply_kind));
    auto fields = reply.initFields(2);
    fields[0].setName(std::string(command::k_correlation_field));
    fields[0].getValue().setText(ref.correlation_id);
    fields[1].setName("result");
    fields[1].getValue().setText("done");
    m_reply.clear();
    wire::append_frame(builder, m_reply);
    client.send({reinterpret_cast<const capnp::word*>(m_reply.data()), m_reply.size() / sizeof(capnp::word)});
    ++m_answered;
}

Ack GatewaysSink::finish(int timeout_ms) {
    Ack total;
    for (auto& [gateway, client] : m_clients) {
        Ack ack = client->wait_ack(client->sent(), timeout_ms);
        total.handled += ack.handled;
        total.refused += ack.refused;
    }
    return total;
}

}  // namespace mh::endpoint
