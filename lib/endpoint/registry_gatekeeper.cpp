#include "endpoint/registry_gatekeeper.h"

#include "message/time.h"

#include <fmt/format.h>

namespace mh::endpoint {

Login RegistryGatekeeper::check_token(std::string_view gateway, std::string_view token, int64_t now_ns) const {
    const gateway::Gateway* found = nullptr;
    gateway::TokenCheck check = m_registry->check_token(gateway, token, now_ns / k_ns_per_second, &found);
    if (check == gateway::TokenCheck::ok && found) return {found->id, ""};
    std::string who = gateway.empty() ? std::string("a bearer token") : fmt::format("gateway '{}'", gateway);
    return {std::nullopt, fmt::format("{}: {}", who, gateway::to_string(check))};
}

Login RegistryGatekeeper::check_certificate(const tls::Fingerprint& fingerprint) const {
    // The chain and the validity period were verified in the handshake; what is left is
    // whose certificate it is.
    if (const gateway::Gateway* found = m_registry->find_by_fingerprint(fingerprint)) return {found->id, ""};
    return {std::nullopt, fmt::format("certificate {} is no gateway's", tls::fingerprint_hex(fingerprint))};
}

bool RegistryGatekeeper::may_publish(std::string_view gateway, std::string_view source) const {
    return m_registry->may_publish(gateway, source);
}

Quota RegistryGatekeeper::quota(std::string_view gateway) const {
    const gateway::Gateway* found = m_registry->find(gateway);
    const gateway::Quotas& q = found ? found->quotas : m_registry->defaults();
    return {static_cast<double>(q.messages_per_second), static_cast<double>(q.burst_messages),
            static_cast<double>(q.bytes_per_second), static_cast<double>(q.burst_bytes),
            static_cast<uint32_t>(q.max_connections)};
}

CommandAccess RegistryGatekeeper::command_access(std::string_view gateway) const {
    const gateway::Gateway* found = m_registry->find(gateway);
    if (!found) return CommandAccess::unknown_gateway;
    return found->commands ? CommandAccess::allowed : CommandAccess::not_allowed;
}

}  // namespace mh::endpoint
