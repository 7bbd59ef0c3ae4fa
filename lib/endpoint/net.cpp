#include "endpoint/net.h"

#include "core/error.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

namespace mh::endpoint {

HostPort parse_host_port(std::string_view text, std::string_view option) {
    auto bad = [&](std::string_view why) {
        return Error(ExitCode::usage, fmt::format("{} '{}': {} (expected HOST:PORT, e.g. 127.0.0.1:8883)", option,
                                                  text, why));
    };
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) throw bad("no port");
    HostPort out;
    std::string_view host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    out.host = host;
    std::string_view port = text.substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
        throw bad("the port is not a number from 0 to 65535");
    out.port = static_cast<uint16_t>(value);
    return out;
}

bool is_loopback(const HostPort& address) {
    return address.host == "127.0.0.1" || address.host == "::1" || address.host == "localhost";
}

void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

namespace {
struct AddrInfo {
    addrinfo* list = nullptr;
    ~AddrInfo() {
        if (list) freeaddrinfo(list);
    }
};

void resolve(const HostPort& address, bool passive, AddrInfo& out) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (passive) hints.ai_flags = AI_PASSIVE;
    std::string port = std::to_string(address.port);
    const char* host = (address.host.empty() || address.host == "*") ? nullptr : address.host.c_str();
    int rc = getaddrinfo(host, port.c_str(), &hints, &out.list);
    if (rc != 0)
        throw Error(ExitCode::unavailable, fmt::format("cannot resolve '{}': {}", address.host, gai_strerror(rc)));
}

std::string describe(const sockaddr_storage& storage) {
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (storage.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        return fmt::format("{}:{}", host, port);
    }
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
    return fmt::format("[{}]:{}", host, port);
}
}  // namespace

Listener listen_on(const HostPort& address, int backlog) {
    AddrInfo info;
    resolve(address, true, info);
    std::string last_error = "no address";
    for (addrinfo* ai = info.list; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
            last_error = std::strerror(errno);
            close(fd);
            continue;
        }
        sockaddr_storage storage{};
        socklen_t length = sizeof(storage);
        getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
        return {fd, describe(storage)};
    }
    throw Error(ExitCode::unavailable,
                fmt::format("cannot listen on {}:{}: {}", address.host, address.port, last_error));
}

int connect_to(const HostPort& address) {
    AddrInfo info;
    resolve(address, false, info);
    std::string last_error = "no address";
    for (addrinfo* ai = info.list; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            last_error = std::strerror(errno);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
    }
    throw Error(ExitCode::unavailable,
                fmt::format("cannot connect to {}:{}: {}", address.host, address.port, last_error));
}

}  // namespace mh::endpoint
