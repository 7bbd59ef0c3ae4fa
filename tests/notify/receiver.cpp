// notify_receiver: the tests' own HTTP(S) and SMTP receiver for mh-notify (no python, nc or
// socat needed on CI). Listens on 127.0.0.1 port 0 and says "listening on 127.0.0.1:PORT"
// on stderr. Each request or mail is written under DIR (http: N.headers and N.body, smtp:
// N.eml and N.tls) and a line "N STATUS" is appended to DIR/log. DIR/mode, read before
// every request, makes it misbehave:
//   ok (or no file)  answer 200 / accept the mail      500    answer 500 (smtp: 451)
//   hang             read the request, answer nothing (until the client gives up)
//   refuse           close the listening socket, so connections are refused, until the
//                    mode changes (then it listens on the same port again)
//   close            accept, then close at once
//
//   notify_receiver http DIR [CERT KEY]     HTTPS with CERT and KEY
//   notify_receiver smtp DIR [CERT KEY]     offers STARTTLS with CERT and KEY
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace {

std::string g_dir;
int g_count = 0;

std::string mode() {
    std::ifstream file(g_dir + "/mode");
    std::string text;
    file >> text;
    return text.empty() ? "ok" : text;
}

void log_line(int n, const std::string& what) {
    std::ofstream(g_dir + "/log", std::ios::app) << n << " " << what << "\n";
}

void write_file(const std::string& name, const std::string& content) {
    std::ofstream(g_dir + "/" + name + ".tmp", std::ios::binary) << content;
    std::rename((g_dir + "/" + name + ".tmp").c_str(), (g_dir + "/" + name).c_str());
}

class Conn {
  public:
    explicit Conn(int fd) : m_fd(fd) {}
    ~Conn() {
        if (m_ssl) {
            SSL_shutdown(m_ssl);
            SSL_free(m_ssl);
        }
        ::close(m_fd);
    }
    bool start_tls(SSL_CTX* ctx) {
        m_ssl = SSL_new(ctx);
        SSL_set_fd(m_ssl, m_fd);
        return SSL_accept(m_ssl) == 1;
    }
    bool tls() const { return m_ssl != nullptr; }
    bool send(const std::string& text) {
        size_t at = 0;
        while (at < text.size()) {
            int n = m_ssl ? SSL_write(m_ssl, text.data() + at, static_cast<int>(text.size() - at))
                          : static_cast<int>(
                                ::send(m_fd, text.data() + at, text.size() - at, MSG_NOSIGNAL));
            if (n <= 0) return false;
            at += static_cast<size_t>(n);
        }
        return true;
    }
    // A line without its CRLF; false at the end.
    bool line(std::string& out) {
        for (;;) {
            size_t end = m_buffer.find("\r\n");
            if (end != std::string::npos) {
                out = m_buffer.substr(0, end);
                m_buffer.erase(0, end + 2);
                return true;
            }
            if (!fill()) return false;
        }
    }
    bool bytes(size_t count, std::string& out) {
        while (m_buffer.size() < count)
            if (!fill()) return false;
        out = m_buffer.substr(0, count);
        m_buffer.erase(0, count);
        return true;
    }
    // Waits until the peer closes (or 30 s): a request left unanswered.
    void hang() {
        pollfd p{m_fd, POLLIN, 0};
        for (int i = 0; i < 300 && mode() == "hang"; ++i) {
            if (::poll(&p, 1, 100) > 0) {
                char c;
                if (::recv(m_fd, &c, 1, MSG_PEEK) <= 0) return;
            }
        }
    }

  private:
    bool fill() {
        char chunk[4096];
        int n = m_ssl ? SSL_read(m_ssl, chunk, sizeof(chunk))
                      : static_cast<int>(::recv(m_fd, chunk, sizeof(chunk), 0));
        if (n <= 0) return false;
        m_buffer.append(chunk, static_cast<size_t>(n));
        return true;
    }
    int m_fd;
    SSL* m_ssl = nullptr;
    std::string m_buffer;
};

void serve_http(Conn& conn) {
    for (;;) {
        std::string request_line, line, headers;
        if (!conn.line(request_line)) return;
        size_t length = 0;
        while (conn.line(line) && !line.empty()) {
            headers += line + "\n";
            if (strncasecmp(line.c_str(), "content-length:", 15) == 0)
                length = std::stoul(line.substr(15));
        }
        std::string body;
        if (!conn.bytes(length, body)) return;
        std::string m = mode();
        if (m == "refuse" || m == "close") return;  // a kept-alive connection ends unanswered
        int n = ++g_count;
        if (m == "hang") {
            log_line(n, "hang");
            conn.hang();
            return;
        }
        int status = m == "500" ? 500 : 200;
        if (status == 200) {
            write_file(std::to_string(n) + ".headers", request_line + "\n" + headers);
            write_file(std::to_string(n) + ".body", body);
        }
        log_line(n, std::to_string(status));
        std::string answer = status == 200 ? "ok" : "failing on purpose";
        std::ostringstream out;
        out << "HTTP/1.1 " << status << (status == 200 ? " OK" : " Internal Server Error")
            << "\r\nContent-Type: text/plain\r\nContent-Length: " << answer.size() << "\r\n\r\n"
            << answer;
        if (!conn.send(out.str())) return;
    }
}

void serve_smtp(Conn& conn, SSL_CTX* ctx) {
    conn.send("220 localhost notify_receiver\r\n");
    std::string line, mail;
    for (;;) {
        if (!conn.line(line)) return;
        std::string verb = line.substr(0, line.find(' '));
        for (auto& c : verb) c = static_cast<char>(toupper(c));
        if (verb == "EHLO") {
            conn.send(std::string("250-localhost\r\n") +
                      (ctx && !conn.tls() ? "250-STARTTLS\r\n" : "") + "250 8BITMIME\r\n");
        } else if (verb == "HELO" || verb == "RSET" || verb == "NOOP") {
            conn.send("250 ok\r\n");
        } else if (verb == "STARTTLS" && ctx && !conn.tls()) {
            conn.send("220 go ahead\r\n");
            if (!conn.start_tls(ctx)) return;
        } else if (verb == "MAIL" || verb == "RCPT") {
            mail += line + "\n";
            conn.send("250 ok\r\n");
        } else if (verb == "DATA") {
            conn.send("354 end with .\r\n");
            std::string data;
            while (conn.line(line) && line != ".")
                data += (line.starts_with("..") ? line.substr(1) : line) + "\n";
            int n = ++g_count;
            if (mode() == "500") {
                log_line(n, "451");
                conn.send("451 failing on purpose\r\n");
            } else {
                write_file(std::to_string(n) + ".tls", conn.tls() ? "tls\n" : "plain\n");
                write_file(std::to_string(n) + ".eml", mail + "\n" + data);
                log_line(n, "250");
                conn.send("250 queued\r\n");
            }
            mail.clear();
        } else if (verb == "QUIT") {
            conn.send("221 bye\r\n");
            return;
        } else {
            conn.send("502 not implemented\r\n");
        }
    }
}

int listen_on(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(fd, 16) != 0) {
        std::perror("notify_receiver: bind/listen");
        std::exit(1);
    }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && argc != 5) {
        std::fprintf(stderr, "usage: notify_receiver http|smtp DIR [CERT KEY]\n");
        return 64;
    }
    std::string kind = argv[1];
    g_dir = argv[2];
    SSL_CTX* ctx = nullptr;
    if (argc == 5) {
        ctx = SSL_CTX_new(TLS_server_method());
        if (SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }
    int listener = listen_on(0);
    sockaddr_in address{};
    socklen_t size = sizeof(address);
    getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size);
    int port = ntohs(address.sin_port);
    std::fprintf(stderr, "notify_receiver: listening on 127.0.0.1:%d\n", port);
    std::fflush(stderr);
    for (;;) {
        if (mode() == "refuse") {
            if (listener >= 0) ::close(listener);
            listener = -1;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        if (listener < 0) listener = listen_on(port);
        pollfd p{listener, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;  // look at the mode now and then
        int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) continue;
        Conn conn(fd);
        if (mode() == "close") continue;
        if (kind == "http") {
            if (ctx && !conn.start_tls(ctx)) continue;
            serve_http(conn);
        } else {
            serve_smtp(conn, ctx);
        }
    }
}
