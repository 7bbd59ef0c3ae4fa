// The native protocol: Cap'n Proto frames over TLS, for the fastest gateways.
//
// Client to endpoint: one hello line, then frames back to back (the mh wire format):
//   "MH1 <gateway> <token>\n"   log in with a token (see mh-endpoint token)
//   "MH1 <gateway>\n"           the client certificate proves the gateway
// The hello line is at most k_max_hello_bytes. Frames follow at once; the client need not
// wait for the answer.
//
// Endpoint to client: records, each an 8-byte header (uint32 type, uint32 payload bytes,
// little endian) and the payload padded with zeros to a multiple of 8 bytes:
//   welcome (1): the gateway id, text          after a successful hello
//   refused (2): the reason, text               then the endpoint closes the connection
//   ack (3):     uint64 handled, uint64 refused cumulative counts of frames since the hello:
//                every frame up to `handled` is in the output or was refused (counted, logged)
//   command (4): one frame, a message of kind "command" for this gateway
#pragma once

#include "core/log.h"
#include "endpoint/net.h"
#include "endpoint/server.h"
#include "tls/tls.h"
#include "wire/frame.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mh::endpoint {

constexpr size_t k_max_hello_bytes = 4096;
constexpr std::string_view k_native_magic = "MH1";

enum class RecordType : uint32_t { welcome = 1, refused = 2, ack = 3, command = 4 };
constexpr size_t k_record_header_bytes = 8;

// Appends one record (header, payload, padding) to `out`.
void append_record(std::vector<std::byte>& out, RecordType type, std::span<const std::byte> payload);

class NativeSession final : public Session {
public:
    explicit NativeSession(Connection& connection) : m_connection(connection) {}
    size_t receive(std::span<const std::byte> data) override;
    void flushed() override;
    bool deliver(const wire::Frame& frame, const command::Ref& ref) override;

private:
    size_t hello(std::span<const std::byte> data);
    void send_record(RecordType type, std::span<const std::byte> payload);
    void refuse_and_close(std::string_view why);

    Connection& m_connection;
    bool m_logged_in = false;
    uint64_t m_handled = 0;
    uint64_t m_refused = 0;
    uint64_t m_acked = 0;
    std::vector<std::byte> m_record;
};

struct Ack {
    uint64_t handled = 0;
    uint64_t refused = 0;
};

// A blocking client of the native protocol, for tests, benchmarks and mh-gen: logs in,
// sends frames in large writes, and reads acknowledgements and commands as they come.
class NativeClient {
public:
    // `tls` null: plaintext (an endpoint with --insecure-loopback). Empty token: the
    // client certificate in `tls` logs in. Throws Error(unavailable) when the endpoint
    // refuses the login or cannot be reached.
    NativeClient(const HostPort& address, std::shared_ptr<tls::Context> tls, const std::string& gateway,
                 const std::string& token);
    ~NativeClient();
    NativeClient(const NativeClient&) = delete;
    NativeClient& operator=(const NativeClient&) = delete;

    void send(const wire::Frame& frame);
    void send_bytes(std::span<const std::byte> bytes);  // raw, for tests of bad input
    void flush();
    // Waits until the endpoint acknowledged `handled` frames (flushes first). Throws
    // Error(unavailable) if the connection ends or stays silent for `timeout_ms`.
    Ack wait_ack(uint64_t handled, int timeout_ms = 30'000);
    // Waits for one command; nullopt when none came within `timeout_ms`.
    std::optional<std::vector<std::byte>> wait_command(int timeout_ms);
    // Reads what the endpoint sent without waiting; returns the commands received so far.
    std::vector<std::vector<std::byte>> take_commands();
    const Ack& last_ack() const { return m_ack; }
    uint64_t sent() const { return m_sent; }
    const std::string& refusal() const { return m_refusal; }

private:
    bool read_records(int timeout_ms);  // false on timeout
    void write_all(std::span<const std::byte> bytes);
    size_t raw_read(std::span<std::byte> into, int timeout_ms);
    void raw_write(std::span<const std::byte> bytes);

    int m_fd = -1;
    std::shared_ptr<tls::Context> m_context;
    std::unique_ptr<tls::Session> m_tls;
    std::vector<std::byte> m_out;
    std::vector<std::byte> m_in;
    Ack m_ack;
    uint64_t m_sent = 0;
    bool m_welcomed = false;
    std::string m_refusal;
    std::vector<std::vector<std::byte>> m_commands;
};

// Frames to an endpoint as the gateways they name: one native connection per gateway
// (the message's `gateway` field picks it), opened on first use. For mh-gen --connect.
struct GatewayLinks {
    std::string address;                         // tls://HOST:PORT, or tcp://HOST:PORT (plaintext)
    std::string ca_file, cert_file, key_file;   // TLS trust and the optional client certificate
    std::map<std::string, std::string> tokens;  // gateway -> token; none: the certificate logs in
    // Act as the devices too: log each command received and reply to it (kind command-reply,
    // the command's source and correlation_id, result "done"). Needs `log`.
    bool answer_commands = false;
    Log* log = nullptr;
};

// "tls://127.0.0.1:7001" -> TLS and the address; "tcp://..." -> plaintext. Throws Error(usage).
std::pair<bool, HostPort> parse_connect_url(std::string_view url);

// Reads "GATEWAY TOKEN" lines (blank lines and # comments skipped). Throws Error(config).
std::map<std::string, std::string> read_token_file(const std::string& path);

class GatewaysSink final : public wire::FrameSink {
public:
    explicit GatewaysSink(const GatewayLinks& links);
    void write(const wire::Frame& frame) override;
    void flush() override;
    // Waits for the acknowledgement of everything sent; returns the totals.
    Ack finish(int timeout_ms = 60'000);
    // Replies sent to commands (with answer_commands): frames of our own among those acknowledged.
    uint64_t answered() const { return m_answered; }

private:
    NativeClient& client(std::string_view gateway);
    void answer(NativeClient& client, std::string_view gateway, const std::vector<std::byte>& command);
    GatewayLinks m_links;
    bool m_tls;
    HostPort m_address;
    std::shared_ptr<tls::Context> m_context;
    std::map<std::string, std::unique_ptr<NativeClient>, std::less<>> m_clients;
    std::string m_last_gateway;
    NativeClient* m_last = nullptr;
    std::vector<std::byte> m_reply;
    uint64_t m_answered = 0;
};

}  // namespace mh::endpoint
