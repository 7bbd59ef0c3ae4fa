// PLACEHOLDER main of mh-endpoint, from the gateway helper: only the provisioning
// subcommands (tools/mh-endpoint/provision.cpp), until the endpoint's own main.cpp lands.
// When merging, keep the endpoint's main and have it call gateway::add_provision_commands(app).
#include "cli/tool.h"
#include "gateway/provision_commands.h"

int main(int argc, char** argv) {
    using namespace mh;
    cli::CommonOptions common;
    CLI::App app{"The secured gate for field gateways (here only its provisioning subcommands)", "mh-endpoint"};
    app.set_version_flag("--version", cli::version_text("mh-endpoint"));
    app.require_subcommand(1);
    gateway::add_provision_commands(app);
    // The subcommands do their work while the command line is parsed; nothing is left to run.
    return cli::run_main(app, common, argc, argv, [](cli::ToolContext&) { return 0; });
}
