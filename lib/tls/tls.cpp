#include "tls/tls.h"

#include "core/error.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mh::tls {

std::string fingerprint_hex(const Fingerprint& fingerprint) {
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(fingerprint.size() * 2);
    for (uint8_t b : fingerprint) {
        out += k_digits[b >> 4];
        out += k_digits[b & 15];
    }
    return out;
}

std::string openssl_errors() {
    std::string out;
    while (unsigned long code = ERR_get_error()) {
        char text[256];
        ERR_error_string_n(code, text, sizeof(text));
        if (!out.empty()) out += "; ";
        out += text;
    }
    return out.empty() ? std::string("no OpenSSL error recorded") : out;
}

namespace {
[[noreturn]] void fail(const std::string& what) {
    throw Error(ExitCode::config, fmt::format("{}: {}", what, openssl_errors()));
}

SSL_CTX* new_ctx(const SSL_METHOD* method) {
    SSL_CTX* ctx = SSL_CTX_new(method);
    if (!ctx) fail("cannot create a TLS context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // Renegotiation lets a peer make us do handshakes at will; TLS 1.3 dropped it.
    // Partial and moving writes suit non-blocking sockets with buffers that move;
    // releasing buffers keeps an idle connection to a few KiB.
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

// Reads for OpenSSL from the socket through a buffer of our own, in large reads. OpenSSL's
// own read-ahead does the same, but moves what is left of its buffer to the front before
// every record: with a small record per message (mosquitto_pub) that memmove of up to
// 16 KiB per record was the largest single cost of the endpoint. OpenSSL, without
// read-ahead, asks for a record's header and then its body, served here by copies. The
// buffer exists only while it holds bytes (idle connections keep none). End of file and
// "try again" are reported as the socket BIO reports them.
constexpr size_t k_reader_bytes = 64 << 10;

struct SocketReader {
    int fd;
    std::unique_ptr<std::byte[]> buffer;
    size_t begin = 0, end = 0;
    bool eof = false;
};

int reader_read(BIO* bio, char* out, size_t size, size_t* got) {
    auto* reader = static_cast<SocketReader*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    *got = 0;
    if (size == 0) return 0;
    if (reader->begin == reader->end) {
        if (!reader->buffer) reader->buffer = std::make_unique<std::byte[]>(k_reader_bytes);
        ssize_t n = ::recv(reader->fd, reader->buffer.get(), k_reader_bytes, 0);
        if (n <= 0) {
            reader->buffer.reset();
            if (n < 0 && BIO_sock_should_retry(static_cast<int>(n))) BIO_set_retry_read(bio);
            else if (n == 0) reader->eof = true;
            return 0;
        }
        reader->begin = 0;
        reader->end = static_cast<size_t>(n);
    }
    size_t take = std::min(size, reader->end - reader->begin);
    std::memcpy(out, reader->buffer.get() + reader->begin, take);
    reader->begin += take;
    if (reader->begin == reader->end) {
        reader->buffer.reset();
        reader->begin = reader->end = 0;
    }
    *got = take;
    return 1;
}

int reader_write(BIO*, const char*, size_t, size_t* wrote) {
    *wrote = 0;
    return 0;
}

long reader_ctrl(BIO* bio, int command, long, void* pointer) {
    auto* reader = static_cast<SocketReader*>(BIO_get_data(bio));
    switch (command) {
        case BIO_CTRL_EOF: return reader->eof && reader->begin == reader->end ? 1 : 0;
        case BIO_CTRL_PENDING: return static_cast<long>(reader->end - reader->begin);
        case BIO_CTRL_FLUSH: return 1;
        case BIO_C_GET_FD:
            if (pointer) *static_cast<int*>(pointer) = reader->fd;
            return reader->fd;
        default: return 0;
    }
}

int reader_destroy(BIO* bio) {
    delete static_cast<SocketReader*>(BIO_get_data(bio));
    BIO_set_data(bio, nullptr);
    return 1;
}

const BIO_METHOD* reader_method() {
    static const BIO_METHOD* method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                     "mh socket reader");
        if (!m || !BIO_meth_set_read_ex(m, reader_read) || !BIO_meth_set_write_ex(m, reader_write) ||
            !BIO_meth_set_ctrl(m, reader_ctrl) || !BIO_meth_set_destroy(m, reader_destroy))
            throw Error(ExitCode::software, "cannot make the socket reader BIO: " + openssl_errors());
        return m;
    }();
    return method;
}

BIO* new_reader(int fd) {
    BIO* bio = BIO_new(reader_method());
    if (!bio) throw Error(ExitCode::software, "BIO_new failed: " + openssl_errors());
    BIO_set_data(bio, new SocketReader{fd});
    BIO_set_init(bio, 1);
    return bio;
}
}  // namespace

std::shared_ptr<Context> Context::server(const ServerConfig& config) {
    ERR_clear_error();
    std::shared_ptr<Context> context(new Context(new_ctx(TLS_server_method())));
    SSL_CTX* ctx = context->get();
    if (SSL_CTX_use_certificate_chain_file(ctx, config.cert_file.c_str()) != 1)
        fail(fmt::format("cannot load the certificate '{}' (PEM expected)", config.cert_file));
    if (SSL_CTX_use_PrivateKey_file(ctx, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
        fail(fmt::format("cannot load the private key '{}' (PEM expected)", config.key_file));
    if (SSL_CTX_check_private_key(ctx) != 1)
        fail(fmt::format("the key '{}' does not match the certificate '{}'", config.key_file, config.cert_file));
    if (config.client_certs != ClientCerts::none) {
        if (config.ca_file.empty())
            throw Error(ExitCode::config, "client certificates need a CA file to verify them against");
        if (SSL_CTX_load_verify_locations(ctx, config.ca_file.c_str(), nullptr) != 1)
            fail(fmt::format("cannot load the client CA '{}'", config.ca_file));
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.ca_file.c_str());
        if (names) SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
        int mode = SSL_VERIFY_PEER;
        if (config.client_certs == ClientCerts::required) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, nullptr);
    }
    // Session resumption through tickets: reconnecting gateways skip the full handshake.
    // Tickets are stateless: no server-side cache, which would hold memory per connection.
    SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>("mh"), 2);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return context;
}

std::shared_ptr<Context> Context::client(const ClientConfig& config) {
    ERR_clear_error();
    std::shared_ptr<Context> context(new Context(new_ctx(TLS_client_method())));
    SSL_CTX* ctx = context->get();
    if (config.verify_server) {
        int ok = config.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                        : SSL_CTX_load_verify_locations(ctx, config.ca_file.c_str(), nullptr);
        if (ok != 1) fail(fmt::format("cannot load the CA '{}'", config.ca_file));
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    }
    if (!config.cert_file.empty()) {
        if (SSL_CTX_use_certificate_chain_file(ctx, config.cert_file.c_str()) != 1)
            fail(fmt::format("cannot load the certificate '{}'", config.cert_file));
        if (SSL_CTX_use_PrivateKey_file(ctx, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
            fail(fmt::format("cannot load the private key '{}'", config.key_file));
    }
    return context;
}

Session::Session(const Context& context, int fd, Role role, const std::string& server_name)
    : m_ssl(SSL_new(context.get())) {
    if (!m_ssl) throw Error(ExitCode::software, "SSL_new failed: " + openssl_errors());
    // Reads through our buffer (no OpenSSL read-ahead), writes straight to the socket.
    BIO* reader = new_reader(fd);
    BIO* writer = BIO_new_socket(fd, BIO_NOCLOSE);
    if (!writer) {
        BIO_free(reader);
        throw Error(ExitCode::software, "BIO_new_socket failed: " + openssl_errors());
    }
    SSL_set_bio(m_ssl.get(), reader, writer);  // takes both
    if (role == Role::server) {
        SSL_set_accept_state(m_ssl.get());
    } else {
        SSL_set_connect_state(m_ssl.get());
        if (!server_name.empty()) {
            SSL_set_tlsext_host_name(m_ssl.get(), server_name.c_str());
            // Verify the name only when it is a name: tests connect to 127.0.0.1.
            if (SSL_set1_host(m_ssl.get(), server_name.c_str()) != 1) ERR_clear_error();
        }
    }
}

Io Session::classify(int ret, const char* call) {
    int error = SSL_get_error(m_ssl.get(), ret);
    switch (error) {
        case SSL_ERROR_WANT_READ: return Io::want_read;
        case SSL_ERROR_WANT_WRITE: return Io::want_write;
        case SSL_ERROR_ZERO_RETURN: return Io::closed;
        case SSL_ERROR_SYSCALL:
            if (ERR_peek_error() == 0) {
                // EOF without close_notify, or a reset: the peer is gone.
                m_error = errno ? errno_text(call, errno) : std::string("connection closed by peer");
                ERR_clear_error();
                return Io::closed;
            }
            [[fallthrough]];
        default: {
            m_error = fmt::format("{}: {}", call, openssl_errors());
            long verify = SSL_get_verify_result(m_ssl.get());
            if (verify != X509_V_OK) m_error += fmt::format(" (certificate: {})", X509_verify_cert_error_string(verify));
            return Io::failed;
        }
    }
}

Io Session::handshake() {
    ERR_clear_error();
    errno = 0;
    int ret = SSL_do_handshake(m_ssl.get());
    if (ret == 1) return Io::done;
    return classify(ret, "TLS handshake");
}

IoResult Session::read(std::span<std::byte> into, bool clear_errors) {
    if (clear_errors) ERR_clear_error();
    errno = 0;
    size_t got = 0;
    int ret = SSL_read_ex(m_ssl.get(), into.data(), into.size(), &got);
    if (ret == 1) return {Io::done, got};
    return {classify(ret, "TLS read"), 0};
}

IoResult Session::write(std::span<const std::byte> bytes, bool clear_errors) {
    if (bytes.empty()) return {Io::done, 0};
    if (clear_errors) ERR_clear_error();
    errno = 0;
    size_t wrote = 0;
    int ret = SSL_write_ex(m_ssl.get(), bytes.data(), bytes.size(), &wrote);
    if (ret == 1) return {Io::done, wrote};
    return {classify(ret, "TLS write"), 0};
}

void Session::hold_buffers(bool hold) {
    if (hold) {
        SSL_clear_mode(m_ssl.get(), SSL_MODE_RELEASE_BUFFERS);
    } else {
        SSL_set_mode(m_ssl.get(), SSL_MODE_RELEASE_BUFFERS);
        SSL_free_buffers(m_ssl.get());  // does nothing while they hold a partial record
    }
}

void Session::shutdown() {
    ERR_clear_error();
    if (SSL_is_init_finished(m_ssl.get())) SSL_shutdown(m_ssl.get());
    ERR_clear_error();
}

std::optional<Fingerprint> Session::peer_fingerprint() const {
    X509* cert = SSL_get0_peer_certificate(m_ssl.get());
    if (!cert || SSL_get_verify_result(m_ssl.get()) != X509_V_OK) return std::nullopt;
    Fingerprint out{};
    unsigned int length = 0;
    if (X509_digest(cert, EVP_sha256(), out.data(), &length) != 1 || length != out.size()) return std::nullopt;
    return out;
}

}  // namespace mh::tls
