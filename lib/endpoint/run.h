// mh-endpoint's main component: the command line as given, checked, then the server run
// with the registry, TLS and the output it needs; SIGHUP reloads registry and certificates.
#pragma once

#include "cli/tool.h"
#include "core/reload.h"
#include "endpoint/server.h"

#include <string>

namespace mh::endpoint {

struct EndpointOptions {
    cli::CommonOptions common;
    std::string native, mqtt, https;  // HOST:PORT each; empty = not served
    std::string registry;             // the gateway registry (TOML)
    std::string cert_file, key_file;  // the endpoint's certificate and key (PEM)
    std::string client_ca;            // CA of gateway certificates: enables mutual TLS
    bool require_client_cert = false;
    bool insecure_loopback = false;
    std::string commands;  // a frame source of kind "command" messages
    uint32_t max_connections = k_default_max_connections;
    uint32_t max_gateway_connections = k_default_max_gateway_connections;
    std::string handshake_timeout = "10s";
    std::string idle_timeout = "5m";
    std::string log_interval = "10s";
    size_t max_message_bytes = k_default_max_message_bytes;
    size_t max_pending_commands = k_default_max_pending_commands;
    std::string command_queue;
    std::string command_ttl = "24h";
};

// Runs until SIGTERM/SIGINT. `reload` is the SIGHUP flag main() installed.
int run(const EndpointOptions& options, cli::ToolContext& context, ReloadFlag& reload);

}  // namespace mh::endpoint
