// mh-endpoint's provisioning subcommands: CLI11 options into lib/gateway/provision.h calls.
//   keygen                                    a random token_key (hex) for the registry
//   token --registry F --gateway ID [--valid 30d]      a token for that gateway
//   ca --dir DIR [--name N] [--days N]                 a development CA (DIR/ca.crt, DIR/ca.key)
//   cert --ca DIR --gateway ID --out DIR [--days N] [--backdate D]   OUT/ID.crt, OUT/ID.key
//   server-cert --ca DIR --host NAME... --out DIR [--days N] [--backdate D]   OUT/server.crt, .key
// The certificate commands print the new certificate's SHA-256 fingerprint on stdout.
#include "gateway/provision_commands.h"

#include "core/error.h"
#include "core/log.h"
#include "gateway/provision.h"
#include "message/time.h"

#include <fmt/format.h>

#include <cstdlib>
#include <functional>
#include <memory>

namespace mh::gateway {
namespace {

struct TokenCommand {
    std::string registry;
    std::string gateway;
    std::string valid = "30d";
};

struct CaCommand {
    std::string dir;
    std::string name = "mh development CA";
    int64_t days = 3650;
};

struct CertCommand {
    std::string ca;
    std::string gateway;
    std::vector<std::string> hosts;
    std::string out;
    int64_t days = 365;
    std::string backdate = "0s";
};

int64_t duration_seconds(const std::string& text, const char* option) {
    auto ns = parse_duration_ns(text);
    if (!ns || *ns < 0)
        throw Error(ExitCode::usage, fmt::format("{} '{}' is not a duration (30d, 12h, 90m)", option, text));
    return *ns / k_ns_per_second;
}

Validity validity_of(const CertCommand& command) {
    return {command.days, duration_seconds(command.backdate, "--backdate")};
}

// Runs one subcommand's work inside app.parse(): success ends parsing with CLI::Success
// (exit 0, nothing printed); an Error is printed and ends the process with its code.
void run(const std::string& tool, const std::function<void()>& work) {
    try {
        work();
    } catch (const Error& e) {
        Log(tool).error("{}", e.what());
        std::exit(static_cast<int>(e.code()));
    } catch (const std::exception& e) {
        Log(tool).error("internal error: {}", e.what());
        std::exit(static_cast<int>(ExitCode::software));
    }
    std::fflush(stdout);
    throw CLI::Success();
}

void add_days_and_backdate(CLI::App& sub, CertCommand& command) {
    sub.add_option("--days", command.days, "Days the certificate is valid")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{36500}));
    sub.add_option("--backdate", command.backdate,
                   "Start the validity this long before now (with --days 1 --backdate 2d: an expired "
                   "certificate, for tests)")
        ->capture_default_str();
}

}  // namespace

void add_provision_commands(CLI::App& app) {
    const std::string tool = app.get_name();

    auto* keygen = app.add_subcommand("keygen", "Print a random token_key (32 bytes, hex) for the registry");
    keygen->callback([tool] { run(tool, [] { fmt::print("{}\n", generate_token_key_hex()); }); });

    auto token = std::make_shared<TokenCommand>();
    auto* token_app = app.add_subcommand("token", "Print a token for a gateway, signed with its registry token_key");
    token_app->add_option("--registry", token->registry, "Gateway registry file (TOML)")->required();
    token_app->add_option("--gateway", token->gateway, "The gateway's id")->required();
    token_app->add_option("--valid", token->valid, "How long the token is valid (30d, 12h, 90m)")
        ->capture_default_str();
    token_app->callback([tool, token] {
        run(tool, [&] {
            int64_t valid_s = duration_seconds(token->valid, "--valid");
            if (valid_s <= 0) throw Error(ExitCode::usage, "--valid must be at least one second");
            auto registry = Registry::load(token->registry);
            int64_t now_s = wall_clock_ns() / k_ns_per_second;
            fmt::print("{}\n", make_token(*registry, token->gateway, now_s + valid_s));
        });
    });

    auto ca = std::make_shared<CaCommand>();
    auto* ca_app = app.add_subcommand("ca", "Make a development CA: DIR/ca.key and DIR/ca.crt (ECDSA P-256)");
    ca_app->add_option("--dir", ca->dir, "Directory for the CA's key and certificate (created 0700)")->required();
    ca_app->add_option("--name", ca->name, "The CA's common name")->capture_default_str();
    ca_app->add_option("--days", ca->days, "Days the CA certificate is valid")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{36500}));
    ca_app->callback([tool, ca] {
        run(tool, [&] {
            Issued issued = make_ca(ca->dir, ca->name, {ca->days, 0});
            Log(tool).info("wrote {} and {}", issued.cert_file, issued.key_file);
            fmt::print("{}\n", fingerprint_text(issued.fingerprint));
        });
    });

    auto cert = std::make_shared<CertCommand>();
    auto* cert_app = app.add_subcommand(
        "cert", "Make a gateway's client certificate (CN = its id) signed by the CA; print its SHA-256 fingerprint");
    cert_app->add_option("--ca", cert->ca, "The CA's directory (from `ca --dir`)")->required();
    cert_app->add_option("--gateway", cert->gateway, "The gateway's id")->required();
    cert_app->add_option("--out", cert->out, "Directory for ID.key and ID.crt")->required();
    add_days_and_backdate(*cert_app, *cert);
    cert_app->callback([tool, cert] {
        run(tool, [&] {
            Issued issued = make_gateway_cert(cert->ca, cert->gateway, cert->out, validity_of(*cert));
            Log(tool).info("wrote {} and {}; in the registry: [gateway.{}] cert_sha256 = \"{}\"", issued.cert_file,
                           issued.key_file, cert->gateway, fingerprint_text(issued.fingerprint));
            fmt::print("{}\n", fingerprint_text(issued.fingerprint));
        });
    });

    auto server = std::make_shared<CertCommand>();
    auto* server_app = app.add_subcommand(
        "server-cert", "Make the endpoint's server certificate with its host names signed by the CA");
    server_app->add_option("--ca", server->ca, "The CA's directory (from `ca --dir`)")->required();
    server_app->add_option("--host", server->hosts,
                           "A DNS name or IP address clients connect to (repeat or list several; the first is the CN)")
        ->required();
    server_app->add_option("--out", server->out, "Directory for server.key and server.crt")->required();
    add_days_and_backdate(*server_app, *server);
    server_app->callback([tool, server] {
        run(tool, [&] {
            Issued issued = make_server_cert(server->ca, server->hosts, server->out, validity_of(*server));
            Log(tool).info("wrote {} and {}", issued.cert_file, issued.key_file);
            fmt::print("{}\n", fingerprint_text(issued.fingerprint));
        });
    });
}

}  // namespace mh::gateway
