// What the endpoint asks about gateways: who presents a token or a certificate, which
// sources each may publish for, and its limits. The registry file (lib/gateway) answers;
// this seam lets SIGHUP swap a freshly loaded registry in while connections stay up.
#pragma once

#include "tls/tls.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mh::endpoint {

struct Quota {
    double messages_per_second = 0;  // 0 = unlimited
    double burst_messages = 0;       // bucket size; 0 = one second's worth
    double bytes_per_second = 0;     // 0 = unlimited
    double burst_bytes = 0;          // bucket size; 0 = one second's worth
    uint32_t max_connections = 0;    // 0 = the endpoint's per-gateway default
};

struct Login {
    std::optional<std::string> gateway;  // set when the credentials prove this identity
    std::string refusal;                 // otherwise why not ("bad token", "expired", ...)
    std::string reason = "auth";         // the metrics label of the refusal
};

// Whether commands may go to a gateway (the registry's `commands` key).
enum class CommandAccess { allowed, unknown_gateway, not_allowed };

class Gatekeeper {
public:
    virtual ~Gatekeeper() = default;
    virtual Login check_token(std::string_view gateway, std::string_view token, int64_t now_ns) const = 0;
    virtual Login check_certificate(const tls::Fingerprint& fingerprint) const = 0;
    virtual bool may_publish(std::string_view gateway, std::string_view source) const = 0;
    virtual Quota quota(std::string_view gateway) const = 0;
    virtual CommandAccess command_access(std::string_view /*gateway*/) const { return CommandAccess::allowed; }
};

}  // namespace mh::endpoint
