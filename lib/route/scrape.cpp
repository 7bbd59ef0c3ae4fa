// A minimal HTTP/1.0 client for the metrics servers on the loopback: connect, ask, read to EOF.
#include "route/scrape.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <fstream>
#include <sstream>

namespace mh::route {

FlowCounts parse_flow_counts(std::string_view text) {
    FlowCounts counts;
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        if (line.empty() || line[0] == '#') continue;
        size_t space = line.rfind(' ');
        if (space == std::string_view::npos) continue;
        std::string_view name = line.substr(0, space);
        std::string_view number = line.substr(space + 1);
        uint64_t value = 0;
        if (std::from_chars(number.data(), number.data() + number.size(), value).ec != std::errc()) continue;
        if (name == "mh_messages_in_total")
            counts.in = value;
        else if (name == "mh_messages_out_total")
            counts.out = value;
        else if (name == "mh_errors_total")
            counts.errors = value;
        else if (name.starts_with("mh_dropped_total"))
            counts.dropped += value;
    }
    return counts;
}

std::optional<std::string> fetch_metrics(int port, int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto remaining_ms = [&] {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        return static_cast<int>(std::max<int64_t>(0, left.count()));
    };
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return std::nullopt;
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        if (errno != EINPROGRESS) return std::nullopt;
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, remaining_ms()) <= 0) return std::nullopt;
        int error = 0;
        socklen_t length = sizeof error;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) return std::nullopt;
    }
    std::string_view request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
        return std::nullopt;
    std::string response;
    char buffer[8192];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        int ready = ::poll(&p, 1, remaining_ms());
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return std::nullopt;
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) break;
        response.append(buffer, static_cast<size_t>(n));
    }
    size_t body = response.find("\r\n\r\n");
    if (!response.starts_with("HTTP/1.") || body == std::string::npos) return std::nullopt;
    return response.substr(body + 4);
}

std::optional<FlowCounts> scrape(int port, int timeout_ms) {
    auto text = fetch_metrics(port, timeout_ms);
    if (!text) return std::nullopt;
    return parse_flow_counts(*text);
}

std::optional<FlowCounts> read_final_counts(const std::string& path) {
    std::ifstream file(path);
    if (!file) return std::nullopt;
    std::stringstream text;
    text << file.rdbuf();
    return parse_flow_counts(text.str());
}

}  // namespace mh::route
