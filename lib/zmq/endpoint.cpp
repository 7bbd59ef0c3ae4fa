#include "zmq/endpoint.h"

#include <fmt/format.h>

namespace mh::zmq {

bool is_stdio(std::string_view spec) { return spec == "-"; }

std::string_view pattern_name(Pattern pattern) {
    switch (pattern) {
        case Pattern::push: return "push";
        case Pattern::pull: return "pull";
        case Pattern::pub: return "pub";
        case Pattern::sub: return "sub";
    }
    return "?";
}

namespace {
bool binds_by_default(Pattern pattern) { return pattern == Pattern::pull || pattern == Pattern::pub; }

bool known_transport(std::string_view address) {
    for (std::string_view scheme : {"tcp://", "ipc://", "inproc://"})
        if (address.substr(0, scheme.size()) == scheme && address.size() > scheme.size()) return true;
    return false;
}
}  // namespace

std::variant<Endpoint, EndpointError> parse_endpoint(std::string_view spec, Direction direction) {
    Endpoint endpoint{direction == Direction::out ? Pattern::push : Pattern::pull, {}};
    std::string_view rest = spec;

    // An optional pattern name before the first '@' or '>'.
    size_t mark = rest.find_first_of("@>");
    size_t scheme = rest.find("://");
    if (mark != std::string_view::npos && mark > 0 && (scheme == std::string_view::npos || mark < scheme)) {
        std::string_view name = rest.substr(0, mark);
        bool found = false;
        for (Pattern p : {Pattern::push, Pattern::pull, Pattern::pub, Pattern::sub}) {
            if (name == pattern_name(p)) {
                endpoint.pattern = p;
                found = true;
            }
        }
        if (!found)
            return EndpointError{fmt::format(
                "endpoint '{}': unknown pattern '{}' (use push, pull, pub or sub)", spec, name)};
        rest.remove_prefix(mark);
    }
    bool is_out = endpoint.pattern == Pattern::push || endpoint.pattern == Pattern::pub;
    if (is_out != (direction == Direction::out))
        return EndpointError{fmt::format("endpoint '{}': a {} socket cannot be used as an {}", spec,
                                         pattern_name(endpoint.pattern),
                                         direction == Direction::out ? "output" : "input")};

    for (bool more = !rest.empty(); more;) {
        size_t comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        more = comma != std::string_view::npos;  // a trailing comma leaves an empty item: refused
        rest = more ? rest.substr(comma + 1) : std::string_view{};
        Attachment attachment{binds_by_default(endpoint.pattern), {}};
        if (!item.empty() && (item[0] == '@' || item[0] == '>')) {
            attachment.bind = item[0] == '@';
            item.remove_prefix(1);
        }
        if (!known_transport(item))
            return EndpointError{fmt::format(
                "endpoint '{}': '{}' is not an address like tcp://host:port, ipc:///path or inproc://name",
                spec, item)};
        attachment.address = std::string(item);
        endpoint.attachments.push_back(std::move(attachment));
    }
    if (endpoint.attachments.empty())
        return EndpointError{fmt::format("endpoint '{}': no address given", spec)};
    return endpoint;
}

}  // namespace mh::zmq
