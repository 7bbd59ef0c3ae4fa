// TLS over non-blocking sockets with OpenSSL 3: RAII over SSL_CTX and SSL, a server
// context from certificate and key files (TLS 1.2 at least, no renegotiation), optional
// mutual TLS against a CA file, and the peer certificate's SHA-256 fingerprint.
// main() (or the component it runs) owns the contexts; a reload builds a new context
// and swaps it in: sessions keep the context they started with (OpenSSL counts references).
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mh::tls {

using Fingerprint = std::array<uint8_t, 32>;  // SHA-256 of the certificate's DER encoding

// Lowercase hex without separators, as `openssl x509 -fingerprint -sha256` prints it
// once the colons are removed and the letters lowered.
std::string fingerprint_hex(const Fingerprint& fingerprint);

enum class ClientCerts {
    none,      // no certificate is asked for
    optional,  // asked for and verified against the CA when sent; a token may stand in
    required,  // a handshake without a valid client certificate fails
};

struct ServerConfig {
    std::string cert_file;  // PEM, the chain after the leaf allowed
    std::string key_file;   // PEM
    std::string ca_file;    // CA(s) that sign gateway certificates; empty = none
    ClientCerts client_certs = ClientCerts::none;
};

struct ClientConfig {
    std::string ca_file;    // trust anchors for the server; empty = the system's
    std::string cert_file;  // optional client certificate (mutual TLS)
    std::string key_file;
    bool verify_server = true;
};

// The last OpenSSL errors as one line (the error queue is emptied).
std::string openssl_errors();

class Context {
public:
    // Throw Error(config) naming the file and OpenSSL's reason.
    static std::shared_ptr<Context> server(const ServerConfig& config);
    static std::shared_ptr<Context> client(const ClientConfig& config);

    SSL_CTX* get() const { return m_ctx.get(); }

private:
    struct Free {
        void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
    };
    explicit Context(SSL_CTX* ctx) : m_ctx(ctx) {}
    std::unique_ptr<SSL_CTX, Free> m_ctx;
};

enum class Io {
    done,        // the call completed (bytes says how much for read/write)
    want_read,   // try again once the socket is readable
    want_write,  // try again once the socket is writable
    closed,      // the peer closed the connection (cleanly or not)
    failed,      // a protocol or verification error: error() says which
};

struct IoResult {
    Io status;
    size_t bytes = 0;
};

enum class Role { server, client };

struct SocketReader;  // the buffer OpenSSL (and then RecordReader) reads the socket through
class RecordReader;

// One TLS connection over a non-blocking socket it does not own. OpenSSL writes with
// write(2): the process must ignore SIGPIPE (cli::run_main does) to see a hang-up as an error.
// A server session that ends its handshake on TLS 1.3 reads the client's records itself
// (RecordReader, with the secret OpenSSL reports through the context's key log callback);
// OpenSSL keeps doing the handshake and the writing.
class Session {
public:
    Session(const Context& context, int fd, Role role, const std::string& server_name = {});
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    Io handshake();
    // OpenSSL judges a failed call by the thread's error queue, which must be empty before
    // it. `clear_errors` false: the caller knows it is (the previous call on this thread
    // succeeded and nothing else ran in between): clearing it costs as much as a small
    // record's decryption, and a loop of reads needs it only before the first.
    // want_read may come from the previous call's last recv: wait for the socket with
    // level-triggered readiness (poll, or epoll without EPOLLET).
    IoResult read(std::span<std::byte> into, bool clear_errors = true);
    IoResult write(std::span<const std::byte> bytes, bool clear_errors = true);
    // While held, OpenSSL keeps its record buffer between records instead of freeing it
    // after each one (SSL_MODE_RELEASE_BUFFERS, which keeps idle connections small, costs a
    // malloc and a free per record); let go, it frees what it no longer needs.
    void hold_buffers(bool hold);
    // Best effort close_notify; never blocks.
    void shutdown();

    // The verified peer certificate's fingerprint, if the peer sent one.
    std::optional<Fingerprint> peer_fingerprint() const;
    std::string version() const { return SSL_get_version(m_ssl.get()); }
    const std::string& error() const { return m_error; }
    // Whether this session reads records itself (a TLS 1.3 server session past its handshake).
    bool reads_records() const { return m_records != nullptr; }
    // Off: every session leaves reading to OpenSSL (tests, and comparisons in benchmarks).
    static void read_records_when_possible(bool on);

    // Called by the context's key log callback with each secret OpenSSL derives.
    void on_secret(std::string_view label, std::span<const uint8_t> secret);

private:
    Io classify(int ret, const char* call);
    void take_over_reading();
    IoResult read_records(std::span<std::byte> into);
    IoResult open_records(std::span<std::byte> into);
    struct Free {
        void operator()(SSL* ssl) const { SSL_free(ssl); }
    };
    std::unique_ptr<SSL, Free> m_ssl;
    Role m_role;
    SocketReader* m_reader;  // owned by OpenSSL's read BIO, which lives as long as m_ssl
    std::unique_ptr<RecordReader> m_records;
    std::unique_ptr<uint8_t[]> m_client_secret;  // from the key log until the handshake ends
    size_t m_client_secret_bytes = 0;
    // Plaintext of a record opened in place in the reader's buffer, not yet read.
    size_t m_plain_begin = 0, m_plain_end = 0;
    bool m_key_update_owed = false;  // the client asked for a KeyUpdate in return
    Io m_deferred = Io::done;        // the status after the bytes the last read returned
    std::string m_error;
};

}  // namespace mh::tls
