// Sockets for the endpoint: HOST:PORT addresses, non-blocking listeners that report the
// port they got (port 0 lets the system pick), and blocking client connections.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mh::endpoint {

struct HostPort {
    std::string host;  // a numeric IPv4/IPv6 address or a name; "*" or "" = every address
    uint16_t port = 0;
};

// "127.0.0.1:7001", "[::1]:7001", "*:7001", ":7001", "gw.example:8883". Throws Error(usage).
HostPort parse_host_port(std::string_view text, std::string_view option);

bool is_loopback(const HostPort& address);

// A non-blocking, close-on-exec listening socket. Throws Error(unavailable) naming the address.
struct Listener {
    int fd = -1;
    std::string bound;  // "127.0.0.1:41234", with the port the system picked
};
Listener listen_on(const HostPort& address, int backlog);

// A blocking TCP connection (TCP_NODELAY set). Throws Error(unavailable).
int connect_to(const HostPort& address);

void set_nonblocking(int fd);

}  // namespace mh::endpoint
