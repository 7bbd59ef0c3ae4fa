// The Gatekeeper the endpoint runs with: the gateway registry file (lib/gateway). A reload
// swaps the registry; the adapter stays, so the server keeps its reference.
#pragma once

#include "endpoint/gatekeeper.h"
#include "gateway/registry.h"

#include <memory>

namespace mh::endpoint {

class RegistryGatekeeper final : public Gatekeeper {
public:
    explicit RegistryGatekeeper(std::shared_ptr<const gateway::Registry> registry) : m_registry(std::move(registry)) {}
    void set(std::shared_ptr<const gateway::Registry> registry) { m_registry = std::move(registry); }
    const gateway::Registry& registry() const { return *m_registry; }

    Login check_token(std::string_view gateway, std::string_view token, int64_t now_ns) const override;
    Login check_certificate(const tls::Fingerprint& fingerprint) const override;
    bool may_publish(std::string_view gateway, std::string_view source) const override;
    Quota quota(std::string_view gateway) const override;
    CommandAccess command_access(std::string_view gateway) const override;

private:
    std::shared_ptr<const gateway::Registry> m_registry;
};

}  // namespace mh::endpoint
