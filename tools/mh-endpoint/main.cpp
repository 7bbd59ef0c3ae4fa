// mh-endpoint: the secured gate for field gateways (TLS; native, MQTT and HTTPS listeners)
// and the provisioning of their identities. The work is in lib/endpoint and lib/gateway.
#include "endpoint/run.h"
#include "gateway/provision_commands.h"

int main(int argc, char** argv) {
    mh::endpoint::EndpointOptions o;
    CLI::App app{"The secured gate for field gateways: authenticates them (tokens, client certificates), accepts "
                 "what they may publish over TLS (native frames, MQTT, HTTPS), stamps it and writes frames; "
                 "delivers commands back. Subcommands provision identities.",
                 "mh-endpoint"};
    mh::cli::add_common_options(app, o.common, mh::cli::Streams::out_only);
    app.remove_option(app.get_option("--dead-letter"));
    const CLI::Validator unsigned_number = mh::cli::unsigned_number();
    app.add_option("--native", o.native, "Listen for the native protocol (frames over TLS) on HOST:PORT");
    app.add_option("--mqtt", o.mqtt, "Listen for MQTT 3.1.1 over TLS on HOST:PORT");
    app.add_option("--https", o.https, "Listen for HTTPS on HOST:PORT");
    app.add_option("--registry,--config", o.registry, "The gateway registry (TOML, see mh-endpoint-registry(5))");
    app.add_option("--cert", o.cert_file, "The endpoint's certificate chain (PEM)");
    app.add_option("--key", o.key_file, "The key of --cert (PEM)");
    app.add_option("--client-ca", o.client_ca, "CA certificate(s) of gateway certificates: enables mutual TLS");
    app.add_flag("--require-client-cert", o.require_client_cert,
                 "Refuse connections without a client certificate (default: a token may stand in)");
    app.add_flag("--insecure-loopback", o.insecure_loopback, "Plaintext listeners, on 127.0.0.1 only (tests, demos)");
    app.add_option("--commands", o.commands,
                   "Where commands come from (a frame source such as @ipc:///run/mh/commands): messages of kind "
                   "command, addressed by their gateway field");
    app.add_option("--max-connections", o.max_connections, "Connections open at once, in total")
        ->capture_default_str()
        ->check(unsigned_number);
    app.add_option("--max-gateway-connections", o.max_gateway_connections,
                   "Connections per gateway when its registry entry sets none")
        ->capture_default_str()
        ->check(unsigned_number);
    app.add_option("--handshake-timeout", o.handshake_timeout, "Time to finish the TLS handshake and log in")
        ->capture_default_str();
    app.add_option("--idle-timeout", o.idle_timeout, "A connection silent this long is closed")->capture_default_str();
    app.add_option("--log-interval", o.log_interval, "Refusals are logged once per gateway per interval")
        ->capture_default_str();
    app.add_option("--max-message", o.max_message_bytes, "Largest message accepted, in bytes")
        ->capture_default_str()
        ->check(CLI::Range(size_t{64}, size_t{64} << 20));
    app.add_option("--max-pending-commands", o.max_pending_commands,
                   "Commands kept per gateway while it is away; beyond, the oldest is dropped (counted)")
        ->capture_default_str()
        ->check(unsigned_number);
    app.add_option("--command-queue", o.command_queue,
                   "Directory of an LMDB queue where commands for absent gateways wait, across restarts");
    app.add_option("--command-ttl", o.command_ttl, "How long an undelivered command waits before it expires")
        ->capture_default_str();
    mh::gateway::add_provision_commands(app);
    mh::ReloadFlag reload{false};
    return mh::cli::run_main(app, o.common, argc, argv, [&](mh::cli::ToolContext& context) {
        mh::install_reload_signal(reload);
        return mh::endpoint::run(o, context, reload);
    });
}
