// The provisioning subcommands of mh-endpoint (keygen, token, ca, cert, server-cert).
// Defined in tools/mh-endpoint/provision.cpp: the CLI wiring of lib/gateway/provision.h.
#pragma once

#include <CLI/CLI.hpp>

namespace mh::gateway {

// Registers the subcommands on `app` (mh-endpoint's App). Each one does its work in its
// CLI11 callback, while app.parse() runs, then ends parsing by throwing CLI::Success, so
// the caller's parse handling (cli::run_main, CLI11_PARSE) returns 0 without running the
// endpoint. On failure it prints "mh-endpoint: ..." and exits with the error's code.
// The endpoint's own options must therefore not be required when a subcommand is given.
void add_provision_commands(CLI::App& app);

}  // namespace mh::gateway
