#include "endpoint/run.h"

#include "core/error.h"
#include "endpoint/registry_gatekeeper.h"
#include "message/time.h"

#include <fmt/format.h>

namespace mh::endpoint {
namespace {

int64_t duration_option(const std::string& text, const char* option) {
    auto ns = parse_duration_ns(text);
    if (!ns || *ns <= 0)
        throw Error(ExitCode::usage, fmt::format("{} '{}': expected a duration such as 500ms, 10s or 5m", option, text));
    return *ns;
}

std::optional<HostPort> address_option(const std::string& text, const char* option) {
    if (text.empty()) return std::nullopt;
    return parse_host_port(text, option);
}

std::shared_ptr<tls::Context> load_tls(const EndpointOptions& options) {
    if (options.insecure_loopback) return nullptr;
    if (options.cert_file.empty() || options.key_file.empty())
        throw Error(ExitCode::usage, "--cert and --key are needed (plaintext only with --insecure-loopback)");
    tls::ServerConfig config{options.cert_file, options.key_file, options.client_ca, tls::ClientCerts::none};
    if (!options.client_ca.empty())
        config.client_certs = options.require_client_cert ? tls::ClientCerts::required : tls::ClientCerts::optional;
    return tls::Context::server(config);
}

}  // namespace

int run(const EndpointOptions& options, cli::ToolContext& context, ReloadFlag& reload) {
    Log& log = context.log();
    if (options.registry.empty()) throw Error(ExitCode::usage, "--registry FILE is needed: who may connect");
    if (options.insecure_loopback && (!options.cert_file.empty() || !options.client_ca.empty()))
        throw Error(ExitCode::usage, "--insecure-loopback serves plaintext: leave out --cert, --key and --client-ca");
    if (options.require_client_cert && options.client_ca.empty())
        throw Error(ExitCode::usage, "--require-client-cert needs --client-ca");

    ServerOptions server_options;
    server_options.native = address_option(options.native, "--native");
    server_options.mqtt = address_option(options.mqtt, "--mqtt");
    server_options.https = address_option(options.https, "--https");
    server_options.insecure_loopback = options.insecure_loopback;
    server_options.max_connections = options.max_connections;
    server_options.max_gateway_connections = options.max_gateway_connections;
    server_options.handshake_timeout_ns = duration_option(options.handshake_timeout, "--handshake-timeout");
    server_options.idle_timeout_ns = duration_option(options.idle_timeout, "--idle-timeout");
    server_options.refusal_log_interval_ns = duration_option(options.log_interval, "--log-interval");
    server_options.max_message_bytes = options.max_message_bytes;
    server_options.max_pending_commands = options.max_pending_commands;
    server_options.command_queue = options.command_queue;
    server_options.command_ttl_ns = duration_option(options.command_ttl, "--command-ttl");

    RegistryGatekeeper gatekeeper(gateway::Registry::load(options.registry));
    log.info("{} gateways in {}", gatekeeper.registry().size(), options.registry);
    auto tls = load_tls(options);

    std::vector<std::string> outputs = options.common.out;
    if (outputs.empty()) outputs.push_back("-");
    if (outputs.size() > 1) throw Error(ExitCode::usage, "--out: one output (tee with mh-route or a pub socket)");
    auto output = context.open_frame_sink(outputs.front());
    std::unique_ptr<wire::FrameSource> commands;
    if (!options.commands.empty()) commands = context.open_frame_source(options.commands);

    Server server(server_options, tls, gatekeeper, *output, commands.get(), context.metrics(), log, context.stop());
    auto on_reload = [&] {
        // Either part may fail (a typo in the file): the old one then stays in force.
        try {
            auto registry = gateway::Registry::load(options.registry);
            gatekeeper.set(registry);
            server.set_gatekeeper(gatekeeper);
            log.info("reloaded {}: {} gateways", options.registry, registry->size());
        } catch (const Error& e) {
            log.error("reload of the registry failed, keeping the old one: {}", e.what());
        }
        if (tls) {
            try {
                server.set_tls(load_tls(options));
                log.info("reloaded the certificate {}", options.cert_file);
            } catch (const Error& e) {
                log.error("reload of the certificate failed, keeping the old one: {}", e.what());
            }
        }
    };
    server.run(&reload, on_reload);
    output->flush();
    return 0;
}

}  // namespace mh::endpoint
