// Host wiring: ipc on one host, tcp (and CURVE keys) across hosts; see wiring.h.
#include "route/wiring.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

namespace mh::route {
namespace {

bool is_ip_literal(std::string_view address) {
    if (address.starts_with('[')) return true;  // IPv6, bracketed
    return !address.empty() && address.find_first_not_of("0123456789.") == std::string_view::npos;
}

}  // namespace

HostWiring::HostWiring(const manifest::Manifest& manifest, std::string this_host, std::string ipc_dir)
    : m_manifest(manifest),
      m_this_host(std::move(this_host)),
      m_ipc_dir(std::move(ipc_dir)),
      m_next_port(manifest.defaults.base_port) {}

std::string HostWiring::host_of(const std::string& stage_host) const {
    // Without [hosts], every stage runs on the one machine, whatever it is called.
    return m_manifest.hosts.empty() || stage_host.empty() ? m_this_host : stage_host;
}

InputAddress HostWiring::address(const std::string& group, uint32_t replica, const std::string& host,
                                 const std::vector<std::string>& upstream_hosts) {
    bool crosses = std::any_of(upstream_hosts.begin(), upstream_hosts.end(),
                               [&](const std::string& u) { return host_of(u) != host_of(host); });
    if (!crosses) {
        std::string path = fmt::format("{}/{}.{}", m_ipc_dir, group, replica);
        return InputAddress{"@ipc://" + path, ">ipc://" + path};
    }
    uint32_t port = m_next_port++;
    m_tcp_inputs.push_back({fmt::format("{}.{}", group, replica), host_of(host), port});
    const manifest::Host* h = m_manifest.find_host(host_of(host));
    std::string address = h ? h->address : "127.0.0.1";
    // An IPv6 address goes in brackets (ZeroMQ's syntax, and zmq/socket.cpp turns IPv6 on).
    if (address.find(':') != std::string::npos) address = "[" + address + "]";
    // A name may resolve to an address of another interface than the one peers reach:
    // bind every interface then, and let CURVE decide who gets in.
    std::string bind_address = is_ip_literal(address) ? address : "*";
    return InputAddress{fmt::format("@tcp://{}:{}", bind_address, port), fmt::format(">tcp://{}:{}", address, port)};
}

std::string curve_servers(const manifest::Manifest& manifest, const std::string& keys_dir,
                          const std::string& manifest_file) {
    if (manifest.hosts.empty())
        throw Error(ExitCode::usage, "--keys: the manifest declares no [hosts], so no edge crosses hosts");
    std::string servers;
    for (const auto& host : manifest.hosts) {
        std::string path = fmt::format("{}/{}.pub", keys_dir, host.name);
        std::ifstream file(path);
        std::string key;
        if (!(file >> key) || key.size() != 40)
            throw Error(ExitCode::config, fmt::format("--keys: cannot read a public key from {}: make the keys "
                                                      "with mh-route keys {} --dir {}",
                                                      path, manifest_file, keys_dir));
        servers += (servers.empty() ? "" : " ") + host.address + "=" + key;
    }
    return servers;
}

void require_host(const manifest::Manifest& manifest, const std::string& host, const std::string& manifest_file) {
    if (manifest.hosts.empty() || manifest.find_host(host)) return;
    std::string list;
    for (const auto& h : manifest.hosts) list += (list.empty() ? "" : ", ") + h.name;
    throw Error(ExitCode::usage,
                fmt::format("--host {}: not a host of {}; its hosts are: {}", host, manifest_file, list));
}

bool uses_tcp(const ProcessSpec& process) {
    for (const auto& word : process.argv)
        if (word.find("tcp://") != std::string::npos) return true;
    return false;
}

}  // namespace mh::route
