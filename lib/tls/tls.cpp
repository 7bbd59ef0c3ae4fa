#include "tls/tls.h"

#include "core/error.h"
#include "tls/record_reader.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
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

struct SocketReader {
    explicit SocketReader(int socket) : fd(socket) {}
    int fd;
    std::unique_ptr<std::byte[]> buffer;
    size_t begin = 0, end = 0;
    bool eof = false;
};

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
constexpr size_t k_reader_bytes = 64 << 10;  // holds the largest record (k_max_ciphertext_bytes)

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
    BIO_set_data(bio, new SocketReader(fd));
    BIO_set_init(bio, 1);
    return bio;
}

int session_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

std::atomic<bool> g_read_records{true};

// OpenSSL reports each secret it derives as an NSS key log line: "LABEL <client random
// in hex> <secret in hex>". The session keeps the one it will read with.
void on_key_log(const SSL* ssl, const char* line) {
    auto* session = static_cast<Session*>(SSL_get_ex_data(ssl, session_index()));
    std::string_view text(line);
    size_t label_end = text.find(' ');
    size_t random_end = label_end == std::string_view::npos ? label_end : text.find(' ', label_end + 1);
    if (!session || random_end == std::string_view::npos) return;
    std::string_view hex = text.substr(random_end + 1);
    uint8_t secret[64];
    if (hex.size() % 2 || hex.size() / 2 > sizeof(secret)) return;
    for (size_t i = 0; i < hex.size() / 2; ++i) {
        int hi = OPENSSL_hexchar2int(static_cast<unsigned char>(hex[2 * i]));
        int lo = OPENSSL_hexchar2int(static_cast<unsigned char>(hex[2 * i + 1]));
        if (hi < 0 || lo < 0) return;
        secret[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    session->on_secret(text.substr(0, label_end), std::span<const uint8_t>(secret, hex.size() / 2));
    OPENSSL_cleanse(secret, sizeof(secret));
}
}  // namespace

void Session::read_records_when_possible(bool on) { g_read_records = on; }

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
    SSL_CTX_set_keylog_callback(ctx, on_key_log);  // the client's traffic secret: Session
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
    : m_ssl(SSL_new(context.get())), m_role(role) {
    if (!m_ssl) throw Error(ExitCode::software, "SSL_new failed: " + openssl_errors());
    // Reads through our buffer (no OpenSSL read-ahead), writes straight to the socket.
    BIO* reader = new_reader(fd);
    BIO* writer = BIO_new_socket(fd, BIO_NOCLOSE);
    if (!writer) {
        BIO_free(reader);
        throw Error(ExitCode::software, "BIO_new_socket failed: " + openssl_errors());
    }
    m_reader = static_cast<SocketReader*>(BIO_get_data(reader));
    SSL_set_bio(m_ssl.get(), reader, writer);  // takes both
    SSL_set_ex_data(m_ssl.get(), session_index(), this);
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
    if (ret == 1) {
        take_over_reading();
        return Io::done;
    }
    return classify(ret, "TLS handshake");
}

Session::~Session() {
    if (m_client_secret) OPENSSL_cleanse(m_client_secret.get(), m_client_secret_bytes);
}

void Session::on_secret(std::string_view label, std::span<const uint8_t> secret) {
    if (m_role != Role::server || label != "CLIENT_TRAFFIC_SECRET_0" || !g_read_records) return;
    m_client_secret = std::make_unique<uint8_t[]>(secret.size());
    std::memcpy(m_client_secret.get(), secret.data(), secret.size());
    m_client_secret_bytes = secret.size();
}

// At the end of a server's TLS 1.3 handshake OpenSSL has read exactly up to the client's
// Finished (it reads a record's header, then its body, never ahead), so what the reader
// holds or reads next is the client's first application record, number 0 under its
// traffic secret.
void Session::take_over_reading() {
    if (!m_client_secret) return;
    const SSL_CIPHER* cipher = SSL_get_current_cipher(m_ssl.get());
    if (SSL_version(m_ssl.get()) == TLS1_3_VERSION && cipher && !SSL_has_pending(m_ssl.get()))
        m_records = RecordReader::create(SSL_CIPHER_get_protocol_id(cipher),
                                         std::span<const uint8_t>(m_client_secret.get(), m_client_secret_bytes));
    OPENSSL_cleanse(m_client_secret.get(), m_client_secret_bytes);
    m_client_secret.reset();
}

IoResult Session::read_records(std::span<std::byte> into) {
    // What the last call learnt after it had bytes to return: said now. An earlier "try
    // again" is still good enough for a caller that waits on level-triggered readiness (the
    // endpoint's epoll): data that came since is reported at once. It spares a recv that
    // would say it once more at the end of every burst.
    if (m_plain_begin == m_plain_end && m_deferred != Io::done) {
        Io status = m_deferred;
        if (status == Io::want_read) m_deferred = Io::done;
        return {status, 0};
    }
    IoResult result = open_records(into);
    if (result.bytes == 0 || result.status == Io::done) return result;
    m_deferred = result.status;
    return {Io::done, result.bytes};
}

IoResult Session::open_records(std::span<std::byte> into) {
    SocketReader& in = *m_reader;
    size_t got = 0;
    auto give_plaintext = [&] {
        size_t take = std::min(m_plain_end - m_plain_begin, into.size() - got);
        std::memcpy(into.data() + got, in.buffer.get() + m_plain_begin, take);
        m_plain_begin += take;
        got += take;
    };
    // What is left of a record opened in place goes first: the buffer is not moved until then.
    if (m_plain_begin < m_plain_end) give_plaintext();
    while (got < into.size()) {
        std::span<const std::byte> held;
        if (in.buffer) held = {in.buffer.get() + in.begin, in.end - in.begin};
        size_t record_bytes = 0;
        switch (m_records->check_header(held, record_bytes)) {
            case RecordReader::Check::bad: m_error = m_records->error(); return {Io::failed, got};
            case RecordReader::Check::incomplete: break;
            case RecordReader::Check::complete: {
                std::byte* record = in.buffer.get() + in.begin;
                size_t body = record_bytes - k_record_header_bytes - k_aead_tag_bytes;
                // Straight into the caller's space when it has room, else in place.
                bool direct = into.size() - got >= body;
                std::byte* out = direct ? into.data() + got : record + k_record_header_bytes;
                RecordReader::Opened opened = m_records->open({record, record_bytes}, out);
                in.begin += record_bytes;
                switch (opened.content) {
                    case RecordReader::Content::data:
                        if (direct) {
                            got += opened.content_bytes;
                        } else {
                            m_plain_begin = static_cast<size_t>(out - in.buffer.get());
                            m_plain_end = m_plain_begin + opened.content_bytes;
                            give_plaintext();
                        }
                        continue;
                    case RecordReader::Content::key_updated:
                        if (m_records->reply_key_update()) m_key_update_owed = true;
                        continue;
                    case RecordReader::Content::close_notify: m_error = "closed by the peer"; return {Io::closed, got};
                    case RecordReader::Content::failed: m_error = m_records->error(); return {Io::failed, got};
                }
                continue;
            }
        }
        // A record is incomplete: move what there is of it to the front and read on.
        if (!in.buffer) {
            in.buffer = std::make_unique<std::byte[]>(k_reader_bytes);
            in.begin = in.end = 0;
        } else if (in.begin > 0) {
            std::memmove(in.buffer.get(), in.buffer.get() + in.begin, in.end - in.begin);
            in.end -= in.begin;
            in.begin = 0;
        }
        ssize_t n = ::recv(in.fd, in.buffer.get() + in.end, k_reader_bytes - in.end, 0);
        if (n > 0) {
            in.end += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (in.begin == in.end) in.buffer.reset();  // idle connections hold no buffer
            return {Io::want_read, got};
        }
        m_error = n < 0                  ? errno_text("TLS read", errno)
                  : in.end > in.begin ? std::string("connection closed in the middle of a TLS record")
                                      : std::string("connection closed by peer without close_notify");
        return {Io::closed, got};
    }
    return {Io::done, got};
}

IoResult Session::read(std::span<std::byte> into, bool clear_errors) {
    if (m_records) return read_records(into);
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
    // Owed since the client's KeyUpdate asked for one: OpenSSL sends it before this write
    // (it refuses while a write is unfinished: then the next write tries again).
    if (m_key_update_owed) {
        if (SSL_key_update(m_ssl.get(), SSL_KEY_UPDATE_NOT_REQUESTED) == 1) m_key_update_owed = false;
        else ERR_clear_error();
    }
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
