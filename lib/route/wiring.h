// The wiring of a channel spread over the hosts of [hosts], shared by `units` and
// `up --host` so that both ends of an edge agree: an input fed from the same host is an ipc
// socket in the host's socket directory; an input fed from another host listens on tcp at
// its host's address, ports numbered from base_port over the whole channel (every host
// computes the same numbers), with CURVE when keys are given.
#pragma once

#include "manifest/manifest.h"
#include "route/plan.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mh::route {

struct TcpInput {
    std::string process;  // "group.replica"
    std::string host;
    uint32_t port = 0;
};

class HostWiring {
public:
    // `this_host` is where the plan is being made for (it names the host of every stage
    // when the manifest has no [hosts]); ipc sockets go under `ipc_dir`.
    HostWiring(const manifest::Manifest& manifest, std::string this_host, std::string ipc_dir);

    // For PlanOptions::address.
    InputAddress address(const std::string& group, uint32_t replica, const std::string& host,
                         const std::vector<std::string>& upstream_hosts);
    // The host a stage or process really runs on ("" in the manifest: this host).
    std::string host_of(const std::string& stage_host) const;
    const std::vector<TcpInput>& tcp_inputs() const { return m_tcp_inputs; }

private:
    const manifest::Manifest& m_manifest;
    std::string m_this_host;
    std::string m_ipc_dir;
    uint32_t m_next_port;
    std::vector<TcpInput> m_tcp_inputs;
};

// "ADDRESS=KEY ADDRESS=KEY ...", every host's public key from KEYS_DIR/HOST.pub by the
// address its peers connect to (MH_CURVE_SERVERS). Error(config) when one is missing;
// `manifest_file` names the manifest in the hint.
std::string curve_servers(const manifest::Manifest& manifest, const std::string& keys_dir,
                          const std::string& manifest_file);

// Error(usage) unless `host` is one of [hosts] (any name will do when there are none).
void require_host(const manifest::Manifest& manifest, const std::string& host, const std::string& manifest_file);

bool uses_tcp(const ProcessSpec& process);

}  // namespace mh::route
