#include "notify/sinks.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "json/json_codec.h"
#include "message/id.h"
#include "message/scratch_builder.h"
#include "message/time.h"
#include "notify/notification.h"
#include "zmq/endpoint.h"
#include "zmq/socket.h"

extern char** environ;

namespace mh::notify {
namespace {

constexpr size_t k_max_reason_bytes = 200;  // of a receiver's answer, in logs and dead-letters
constexpr long k_min_timeout_ms = 1;

long timeout_ms(int64_t ns) {
    return std::max(k_min_timeout_ms, static_cast<long>(ns / k_ns_per_ms));
}

std::string_view view(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

std::string id_text(schema::Message::Reader message) {
    auto id = message.getId();
    if (id.size() != 16) return {};
    char buffer[k_id_text_chars];
    char* end = format_id(std::span<const uint8_t>(id.begin(), id.size()), buffer);
    return std::string(buffer, static_cast<size_t>(end - buffer));
}

// The parts of a libcurl easy handle every curl-based sink shares.
class Curl {
  public:
    Curl() : m_curl(curl_easy_init()) {
        if (!m_curl) throw Error(ExitCode::software, "curl_easy_init failed");
    }
    ~Curl() {
        curl_easy_cleanup(m_curl);
        if (m_headers) curl_slist_free_all(m_headers);
    }
    Curl(const Curl&) = delete;
    Curl& operator=(const Curl&) = delete;
    CURL* get() const { return m_curl; }

    // Resets per-request options; the connection itself is kept for the next request.
    void prepare(int64_t timeout_ns, const std::string& cacert, const StopFlag* stop) {
        curl_easy_reset(m_curl);
        curl_easy_setopt(m_curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
        curl_easy_setopt(m_curl, CURLOPT_TIMEOUT_MS, timeout_ms(timeout_ns));
        curl_easy_setopt(m_curl, CURLOPT_ERRORBUFFER, m_error);
        if (!cacert.empty()) curl_easy_setopt(m_curl, CURLOPT_CAINFO, cacert.c_str());
        curl_easy_setopt(m_curl, CURLOPT_WRITEFUNCTION, &Curl::collect);
        curl_easy_setopt(m_curl, CURLOPT_WRITEDATA, this);
        if (stop) {
            curl_easy_setopt(m_curl, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(m_curl, CURLOPT_XFERINFOFUNCTION, &Curl::progress);
            curl_easy_setopt(m_curl, CURLOPT_XFERINFODATA, stop);
        }
        m_error[0] = 0;
        m_answer.clear();
        if (m_headers) curl_slist_free_all(m_headers);
        m_headers = nullptr;
    }
    void header(const std::string& line) { m_headers = curl_slist_append(m_headers, line.c_str()); }
    curl_slist* headers() const { return m_headers; }
    std::string error(CURLcode code) const {
        return m_error[0] ? std::string(m_error) : std::string(curl_easy_strerror(code));
    }
    const std::string& answer() const { return m_answer; }

  private:
    // Called about once a second and on every transfer event: a nonzero return aborts.
    static int progress(void* stop, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
        return static_cast<const StopFlag*>(stop)->load(std::memory_order_relaxed) ? 1 : 0;
    }
    static size_t collect(char* data, size_t size, size_t count, void* self) {
        auto& answer = static_cast<Curl*>(self)->m_answer;
        size_t bytes = size * count;
        if (answer.size() < k_max_reason_bytes)
            answer.append(data, std::min(bytes, k_max_reason_bytes - answer.size()));
        return bytes;
    }

    CURL* m_curl;
    curl_slist* m_headers = nullptr;
    char m_error[CURL_ERROR_SIZE] = {};
    std::string m_answer;
};

class WebhookSink final : public Sink {
  public:
    explicit WebhookSink(WebhookConfig config) : m_config(std::move(config)) {}
    std::string name() const override { return "webhook " + m_config.url; }

    Outcome deliver(const NotificationView& notification) override {
        m_curl.prepare(m_config.timeout_ns, m_config.cacert, m_config.stop);
        CURL* curl = m_curl.get();
        curl_easy_setopt(curl, CURLOPT_URL, m_config.url.c_str());
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, notification.json.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(notification.json.size()));
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "mh-notify/0.1");
        m_curl.header("Content-Type: application/json");
        m_curl.header("Expect:");  // no 100-continue round trip
        m_curl.header("X-Mh-Notification: " + id_text(notification.message));
        if (!m_config.secret.empty())
            m_curl.header("X-Mh-Signature: sha256=" +
                          hmac_sha256_hex(m_config.secret, notification.json));
        for (const auto& line : m_config.headers) m_curl.header(line);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, m_curl.headers());
        CURLcode code = curl_easy_perform(curl);
        if (code != CURLE_OK) return {Outcome::Kind::retry, m_curl.error(code)};
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) return {};
        std::string reason = fmt::format("HTTP {}", status);
        if (!m_curl.answer().empty()) reason += ": " + m_curl.answer();
        bool again = status == 408 || status == 429 || status >= 500;
        return {again ? Outcome::Kind::retry : Outcome::Kind::permanent, reason};
    }

  private:
    WebhookConfig m_config;
    Curl m_curl;
};

// RFC 2047 for a Subject that is not plain ASCII.
std::string mail_header_text(std::string_view text) {
    bool ascii = true;
    for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80 && c != '\r' && c != '\n';
    if (ascii) return std::string(text);
    std::string encoded = "=?UTF-8?B?";
    json::append_base64(encoded, std::as_bytes(std::span(text.data(), text.size())));
    return encoded + "?=";
}

class SmtpSink final : public Sink {
  public:
    explicit SmtpSink(SmtpConfig config) : m_config(std::move(config)) {}
    std::string name() const override { return "smtp " + m_config.server; }

    Outcome deliver(const NotificationView& notification) override {
        std::string text = field_text(notification.message, "text");
        std::string subject = text.substr(0, text.find('\n'));
        std::string to;
        for (const auto& address : m_config.to) to += (to.empty() ? "" : ", ") + address;
        char date[64];
        time_t now = time(nullptr);
        tm utc{};
        gmtime_r(&now, &utc);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &utc);
        std::string body_text;  // mail lines end in CRLF
        for (char c : text) body_text += c == '\n' ? std::string("\r\n") : std::string(1, c);
        m_mail = fmt::format(
            "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: "
            "<{}@mh-notify>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
            "8bit\r\n\r\n{}\r\n\r\n{}\r\n",
            m_config.from, to, mail_header_text(subject), date, id_text(notification.message),
            body_text, notification.json);
        m_sent = 0;

        m_curl.prepare(m_config.timeout_ns, m_config.cacert, m_config.stop);
        CURL* curl = m_curl.get();
        std::string url = "smtp://" + m_config.server;
        curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl, CURLOPT_MAIL_FROM, ("<" + m_config.from + ">").c_str());
        curl_slist* recipients = nullptr;
        for (const auto& address : m_config.to)
            recipients = curl_slist_append(recipients, ("<" + address + ">").c_str());
        curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, recipients);
        if (m_config.starttls)
            curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, &SmtpSink::read);
        curl_easy_setopt(curl, CURLOPT_READDATA, this);
        CURLcode code = curl_easy_perform(curl);
        curl_slist_free_all(recipients);
        if (code == CURLE_OK) return {};
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        std::string reason = m_curl.error(code);
        if (status) reason += fmt::format(" (SMTP {})", status);
        // 5xx from the server is a permanent refusal (a bad address); the rest may pass later.
        return {status >= 500 && status < 600 ? Outcome::Kind::permanent : Outcome::Kind::retry,
                reason};
    }

  private:
    static size_t read(char* buffer, size_t size, size_t count, void* self) {
        auto* sink = static_cast<SmtpSink*>(self);
        size_t n = std::min(size * count, sink->m_mail.size() - sink->m_sent);
        std::memcpy(buffer, sink->m_mail.data() + sink->m_sent, n);
        sink->m_sent += n;
        return n;
    }

    SmtpConfig m_config;
    Curl m_curl;
    std::string m_mail;
    size_t m_sent = 0;
};

class ExecSink final : public Sink {
  public:
    ExecSink(std::string command, int64_t timeout_ns, const StopFlag* stop)
        : m_command(std::move(command)), m_timeout_ns(timeout_ns), m_stop(stop) {}
    std::string name() const override { return "exec " + m_command; }

    Outcome deliver(const NotificationView& notification) override {
        auto message = notification.message;
        std::vector<std::string> env;
        for (char** e = environ; *e; ++e)
            if (std::strncmp(*e, "MH_", 3) != 0) env.emplace_back(*e);
        auto add = [&](const char* name, std::string value) {
            env.push_back(fmt::format("{}={}", name, value));
        };
        add("MH_NOTIFICATION", id_text(message));
        add("MH_STATE", field_text(message, "state"));
        add("MH_INCIDENT", field_text(message, "incident"));
        add("MH_RULE", field_text(message, "rule"));
        add("MH_COUNT", field_text(message, "count"));
        add("MH_OPENED", field_text(message, "opened"));
        add("MH_TEXT", field_text(message, "text"));
        add("MH_SOURCE", std::string(view(message.getSource())));
        add("MH_GATEWAY", std::string(view(message.getGateway())));
        add("MH_TIME", format_rfc3339(message.getTime()));
        std::vector<char*> envp;
        for (auto& e : env) envp.push_back(e.data());
        envp.push_back(nullptr);

        int pipe_fds[2];
        if (pipe2(pipe_fds, O_CLOEXEC) != 0)
            return {Outcome::Kind::retry, errno_text("pipe2", errno)};
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, pipe_fds[0], STDIN_FILENO);
        // The child's output must not mix into frames on our stdout.
        posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);  // worker threads block the stop signals
        sigset_t defaults;
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGPIPE);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(
            &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
        posix_spawnattr_setpgroup(&attr, 0);  // its own group: a timeout kills its children too
        std::string shell = "/bin/sh";
        std::string dash_c = "-c";
        char* argv[] = {shell.data(), dash_c.data(), m_command.data(), nullptr};
        pid_t pid = 0;
        int rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp.data());
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        ::close(pipe_fds[0]);
        if (rc != 0) {
            ::close(pipe_fds[1]);
            return {Outcome::Kind::retry, errno_text("posix_spawn /bin/sh", rc)};
        }
        // A command that does not read its stdin is fine. SIGPIPE is blocked in this thread while
        // writing (the library does not count on the tool ignoring it), and one it raised is taken.
        sigset_t pipe_signal, old_mask;
        sigemptyset(&pipe_signal);
        sigaddset(&pipe_signal, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_signal, &old_mask);
        std::string input = notification.json + "\n";
        bool broken = false;
        for (size_t at = 0; at < input.size();) {
            ssize_t n = ::write(pipe_fds[1], input.data() + at, input.size() - at);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                broken = n < 0 && errno == EPIPE;
                break;
            }
            at += static_cast<size_t>(n);
        }
        ::close(pipe_fds[1]);
        if (broken) {
            timespec none{0, 0};
            sigtimedwait(&pipe_signal, nullptr, &none);
        }
        pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
        return wait_for(pid);
    }

  private:
    Outcome wait_for(pid_t pid) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(m_timeout_ns);
        int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
        int status = 0;
        auto pause = std::chrono::microseconds(200);
        for (;;) {
            pid_t done = waitpid(pid, &status, WNOHANG);
            if (done == pid) break;
            if (done < 0 && errno != EINTR) {
                if (pidfd >= 0) ::close(pidfd);
                return {Outcome::Kind::retry, errno_text("waitpid", errno)};
            }
            auto now = std::chrono::steady_clock::now();
            bool stopping = m_stop && m_stop->load(std::memory_order_relaxed);
            if (now >= deadline || stopping) {
                ::kill(-pid, SIGKILL);
                waitpid(pid, &status, 0);
                if (pidfd >= 0) ::close(pidfd);
                if (stopping) return {Outcome::Kind::retry, "stopped"};
                return {Outcome::Kind::retry,
                        fmt::format("timed out after {} ms, killed", m_timeout_ns / k_ns_per_ms)};
            }
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
            if (pidfd >= 0) {
                pollfd p{pidfd, POLLIN, 0};
                ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 100)));
            } else {
                std::this_thread::sleep_for(pause);
                pause = std::min(pause * 2, std::chrono::microseconds(10'000));
            }
        }
        if (pidfd >= 0) ::close(pidfd);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
        if (WIFEXITED(status))
            return {Outcome::Kind::retry, fmt::format("exit status {}", WEXITSTATUS(status))};
        return {Outcome::Kind::retry, fmt::format("killed by signal {}", WTERMSIG(status))};
    }

    std::string m_command;
    int64_t m_timeout_ns;
    const StopFlag* m_stop;
};

class CommandSink final : public Sink {
  public:
    CommandSink(zmq::Context& context, const std::string& spec, std::string command_name,
                int64_t timeout_ns, wire::FrameLimits limits)
        : m_spec(spec), m_command_name(std::move(command_name)), m_limits(limits) {
        auto parsed = zmq::parse_endpoint(spec, zmq::Direction::out);
        if (auto* error = std::get_if<zmq::EndpointError>(&parsed))
            throw Error(ExitCode::usage, "--command: " + error->message);
        m_socket = std::make_unique<zmq::Socket>(context, std::get<zmq::Endpoint>(parsed));
        // A command input that is gone must come back as a failed attempt, not a hang.
        int ms = static_cast<int>(timeout_ms(timeout_ns));
        zmq_setsockopt(m_socket->get(), ZMQ_SNDTIMEO, &ms, sizeof(ms));
    }
    std::string name() const override { return "command " + m_spec; }
    bool wants(Event event) const override { return event != Event::resolved; }

    Outcome deliver(const NotificationView& notification) override {
        auto from = notification.message;
        auto out = m_builder.start();
        out.setId(from.getId());
        out.setTime(wall_clock_ns());
        if (from.hasSource()) out.setSource(from.getSource());
        if (from.hasGateway()) out.setGateway(from.getGateway());
        out.setKind(capnp::Text::Reader(k_command_kind.data(), k_command_kind.size()));
        std::string rule = field_text(from, "rule");
        std::string command = m_command_name.empty() ? rule : m_command_name;
        std::vector<std::pair<std::string_view, std::string>> fields = {
            {"command", command},
            {"rule", rule},
            {"incident", field_text(from, "incident")},
            {"state", field_text(from, "state")},
            {"notification", id_text(from)}};
        auto list = out.initFields(static_cast<unsigned>(fields.size()));
        for (unsigned k = 0; k < fields.size(); ++k) {
            list[k].setName(capnp::Text::Reader(fields[k].first.data(), fields[k].first.size()));
            list[k].getValue().setText(
                capnp::Text::Reader(fields[k].second.data(), fields[k].second.size()));
        }
        m_frame.clear();
        wire::append_frame(m_builder.builder(), m_frame);
        while (zmq_send(m_socket->get(), m_frame.data(), m_frame.size(), 0) < 0) {
            if (zmq_errno() == EINTR) continue;
            if (zmq_errno() == EAGAIN)
                return {Outcome::Kind::retry, "the command input took nothing within the timeout"};
            return {Outcome::Kind::retry, std::string("zmq_send: ") + zmq_strerror(zmq_errno())};
        }
        return {};
    }

  private:
    std::string m_spec;
    std::string m_command_name;
    wire::FrameLimits m_limits;
    std::unique_ptr<zmq::Socket> m_socket;
    ScratchBuilder m_builder;
    std::vector<std::byte> m_frame;
};

class OutSink final : public Sink {
  public:
    OutSink(std::string spec, std::unique_ptr<wire::FrameSink> sink)
        : m_spec(std::move(spec)), m_sink(std::move(sink)) {}
    std::string name() const override { return "out " + m_spec; }
    bool wants_barriers() const override { return true; }
    bool needs_json() const override { return false; }
    // Buffered: a burst goes out in big writes; flush() when the queue has nothing due.
    Outcome deliver(const NotificationView& notification) override {
        m_sink->write(notification.frame);
        return {};
    }
    void barrier(const wire::Frame& frame) override { m_sink->write(frame); }
    void flush() override { m_sink->flush(); }

  private:
    std::string m_spec;
    std::unique_ptr<wire::FrameSink> m_sink;
};

}  // namespace

std::string hmac_sha256_hex(std::string_view secret, std::string_view body) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest, &length);
    std::string hex;
    hex.reserve(length * 2);
    for (unsigned i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
    return hex;
}

std::unique_ptr<Sink> make_webhook(const WebhookConfig& config) {
    return std::make_unique<WebhookSink>(config);
}
std::unique_ptr<Sink> make_exec(const std::string& command, int64_t timeout_ns,
                                const StopFlag* stop) {
    return std::make_unique<ExecSink>(command, timeout_ns, stop);
}
std::unique_ptr<Sink> make_smtp(const SmtpConfig& config) {
    return std::make_unique<SmtpSink>(config);
}
std::unique_ptr<Sink> make_command(zmq::Context& context, const std::string& spec,
                                   const std::string& command_name, int64_t timeout_ns,
                                   wire::FrameLimits limits) {
    return std::make_unique<CommandSink>(context, spec, command_name, timeout_ns, limits);
}
std::unique_ptr<Sink> make_out(std::string spec, std::unique_ptr<wire::FrameSink> sink) {
    return std::make_unique<OutSink>(std::move(spec), std::move(sink));
}

}  // namespace mh::notify
