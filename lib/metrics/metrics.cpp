#include "metrics/metrics.h"

#include "core/error.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace mh::metrics {

void Histogram::observe_ns(int64_t ns) {
    double seconds = static_cast<double>(ns) / 1e9;
    for (size_t i = 0; i < k_bucket_seconds.size(); ++i) {
        if (seconds <= k_bucket_seconds[i]) {
            m_buckets[i].fetch_add(1, std::memory_order_relaxed);
            break;
        }
    }
    m_count.fetch_add(1, std::memory_order_relaxed);
    m_sum_ns.fetch_add(ns > 0 ? static_cast<uint64_t>(ns) : 0, std::memory_order_relaxed);
}

Counter& Registry::counter(const std::string& name, const std::string& help, const std::string& labels) {
    std::lock_guard lock(m_mutex);
    for (auto& e : m_entries)
        if (e.counter && e.name == name && e.labels == labels) return *e.counter;
    m_entries.push_back({name, help, labels, std::make_unique<Counter>(), nullptr});
    return *m_entries.back().counter;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help) {
    std::lock_guard lock(m_mutex);
    for (auto& e : m_entries)
        if (e.histogram && e.name == name) return *e.histogram;
    m_entries.push_back({name, help, "", nullptr, std::make_unique<Histogram>()});
    return *m_entries.back().histogram;
}

std::string Registry::render() const {
    std::lock_guard lock(m_mutex);
    std::string out;
    std::vector<bool> done(m_entries.size(), false);
    // Prometheus wants every sample of one name together, under one HELP and TYPE.
    for (size_t first = 0; first < m_entries.size(); ++first) {
        if (done[first]) continue;
        const Entry& head = m_entries[first];
        fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", head.name, head.help,
                       head.name, head.counter ? "counter" : "histogram");
        for (size_t i = first; i < m_entries.size(); ++i) {
            if (done[i] || m_entries[i].name != head.name) continue;
            done[i] = true;
            render_entry(m_entries[i], out);
        }
    }
    return out;
}

void Registry::render_entry(const Entry& e, std::string& out) {
    if (e.counter) {
        if (e.labels.empty())
            fmt::format_to(std::back_inserter(out), "{} {}\n", e.name, e.counter->value());
        else
            fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", e.name, e.labels, e.counter->value());
        return;
    }
    const Histogram& h = *e.histogram;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < Histogram::k_bucket_seconds.size(); ++i) {
        cumulative += h.m_buckets[i].load(std::memory_order_relaxed);
        fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"{}\"}} {}\n", e.name,
                       Histogram::k_bucket_seconds[i], cumulative);
    }
    fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", e.name,
                   h.count(), e.name, static_cast<double>(h.m_sum_ns.load(std::memory_order_relaxed)) / 1e9,
                   e.name, h.count());
}

Server::Server(const Registry& registry, const std::string& address, Log& log)
    : m_registry(registry), m_log(log) {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos)
        throw Error(ExitCode::usage, fmt::format("--metrics '{}': expected HOST:PORT or :PORT", address));
    std::string host = address.substr(0, colon);
    std::string port = address.substr(colon + 1);
    if (host.empty() || host == "*") host = "0.0.0.0";
    if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
        throw Error(ExitCode::usage, fmt::format("--metrics '{}': {}", address, gai_strerror(rc)));
    m_listen_fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(m_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = ::bind(m_listen_fd, found->ai_addr, found->ai_addrlen);
    int err = errno;
    freeaddrinfo(found);
    if (rc != 0 || ::listen(m_listen_fd, 16) != 0) {
        ::close(m_listen_fd);
        throw Error(ExitCode::unavailable,
                    fmt::format("--metrics '{}': cannot listen: {}", address, std::strerror(err)));
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(m_listen_fd, reinterpret_cast<sockaddr*>(&bound), &length);
    m_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    if (::pipe2(m_wake_pipe, O_CLOEXEC) != 0) throw Error(ExitCode::software, errno_text("pipe2", errno));
    m_thread = std::thread([this] { serve(); });
}

Server::~Server() {
    [[maybe_unused]] auto ignored = ::write(m_wake_pipe[1], "x", 1);
    m_thread.join();
    ::close(m_listen_fd);
    ::close(m_wake_pipe[0]);
    ::close(m_wake_pipe[1]);
}

void Server::serve() {
    constexpr int k_client_timeout_ms = 2000;
    for (;;) {
        pollfd fds[2] = {{m_listen_fd, POLLIN, 0}, {m_wake_pipe[0], POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents) return;
        int client = ::accept4(m_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        // Read the request head (we answer every path with the metrics), bounded in time.
        char request[2048];
        size_t got = 0;
        while (got < sizeof(request)) {
            pollfd p{client, POLLIN, 0};
            if (::poll(&p, 1, k_client_timeout_ms) <= 0) break;
            ssize_t n = ::read(client, request + got, sizeof(request) - got);
            if (n <= 0) break;
            got += static_cast<size_t>(n);
            if (std::string_view(request, got).find("\r\n\r\n") != std::string_view::npos) break;
        }
        std::string body = m_registry.render();
        std::string response = fmt::format(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n"
            "Connection: close\r\n\r\n{}",
            body.size(), body);
        size_t sent = 0;
        while (sent < response.size()) {
            ssize_t n = ::send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) break;
            sent += static_cast<size_t>(n);
        }
        ::close(client);
    }
}

}  // namespace mh::metrics
