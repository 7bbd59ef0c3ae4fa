// mh-route: channels from a TOML manifest: check it, draw it, run and supervise it, report
// on it, and turn it into systemd units. The work is in lib/manifest and lib/route.
#include "cli/tool.h"
#include "route/channel_test.h"
#include "route/route_tool.h"

namespace {

void add_log_level(CLI::App& app, mh::cli::CommonOptions& common) {
    app.add_option("--log-level", common.log_level, "error, warn, info or debug")
        ->capture_default_str()
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}));
}

}  // namespace

int main(int argc, char** argv) {
    using namespace mh;
    cli::CommonOptions common;
    route::CheckCommand check;
    route::GraphCommand graph;
    route::UpCommand up;
    route::StatusCommand status;
    route::UnitsCommand units;
    route::KeysCommand keys;
    route::TestCommand test;

    CLI::App app{"Channels from a TOML manifest: check, draw, run and supervise, report, deploy", "mh-route"};
    app.set_version_flag("--version", cli::version_text("mh-route"));
    app.require_subcommand(1);

    auto* check_app = app.add_subcommand("check", "Check a manifest: every error with its line, column and "
                                                  "what to do; exit 78 if there is any");
    check_app->add_option("FILE", check.file, "The manifest")->required();
    check_app->add_flag("-q,--quiet", check.quiet, "No summary when the manifest is fine");
    add_log_level(*check_app, common);

    auto* graph_app = app.add_subcommand("graph", "Draw the channel as Graphviz DOT (dot -Tsvg), or as text");
    graph_app->add_option("FILE", graph.file, "The manifest")->required();
    graph_app->add_flag("--text", graph.text, "A readable text form instead of DOT");
    add_log_level(*graph_app, common);

    auto* up_app = app.add_subcommand("up", "Run the channel here: every stage a process, wired over ipc sockets, "
                                            "supervised; SIGTERM drains it from the sources down");
    up_app->add_option("FILE", up.file, "The manifest")->required();
    up_app->add_option("--runtime-dir", up.runtime_dir,
                       "Sockets and state (default: [defaults] runtime_dir, else $XDG_RUNTIME_DIR/mh-route/NAME or "
                       "/tmp/mh-route-UID/NAME; with --host, /HOST appended)");
    up_app->add_option("--host", up.host,
                       "Run only the stages of this host of [hosts]; edges to and from other hosts go over tcp, "
                       "wired as units does");
    up_app->add_option("--keys", up.keys,
                       "With --host: a directory with this host's HOST.key and every host's HOST.pub (mh-route "
                       "keys): tcp edges use CURVE and refuse any other key")
        ->needs("--host");
    add_log_level(*up_app, common);

    auto* status_app = app.add_subcommand("status", "A table per process of a running channel: state, pid, restarts, "
                                                    "messages in/out per second, totals, dropped, errors");
    status_app->add_option("FILE", status.file, "The manifest")->required();
    status_app->add_option("--runtime-dir", status.runtime_dir, "As given to up");
    status_app->add_option("--host", status.host, "As given to up");
    status_app->add_option("--interval", status.interval_s, "Seconds between the two readings the rates come from")
        ->capture_default_str()
        ->check(CLI::Range(0.05, 3600.0));
    status_app->add_flag("-w,--watch", status.watch, "Refresh the table every interval until interrupted");
    add_log_level(*status_app, common);

    auto* test_app = app.add_subcommand("test", "Run the channel's tests: given messages in, the real stages run, "
                                                "the messages out checked; exit 1 if a test fails");
    test_app->add_option("FILE", test.file, "The manifest")->required();
    test_app->add_option("-t,--tests", test.tests, "The test file (default: FILE with .test.toml for .toml)");
    test_app->add_option("-k,--match", test.match, "Run only the tests whose name contains this text");
    test_app->add_flag("--keep", test.keep, "Keep each test's directory: stage inputs, outputs, logs and stores");
    test_app->add_flag("-v,--verbose", test.verbose, "Show what every stage writes on stderr");
    add_log_level(*test_app, common);

    auto* units_app = app.add_subcommand("units", "Write systemd units for the stages on one host: wiring, restart "
                                                  "policy, sandboxing, and a target that starts them all");
    units_app->add_option("FILE", units.file, "The manifest")->required();
    units_app->add_option("--host", units.host, "The host of [hosts] to write units for")->required();
    units_app->add_option("-d,--dir", units.dir, "Where the unit files go")->capture_default_str();
    units_app->add_option("--keys", units.keys,
                          "A directory with every host's HOST.pub (mh-route keys): tcp edges use CURVE, and "
                          "refuse any other key");
    add_log_level(*units_app, common);

    auto* keys_app = app.add_subcommand("keys", "Make a CURVE key pair per host (HOST.key, secret; HOST.pub) for "
                                                "the encrypted, authenticated tcp edges of units --keys");
    keys_app->add_option("FILE", keys.file, "The manifest")->required();
    keys_app->add_option("-d,--dir", keys.dir, "Where the keys go")->capture_default_str();
    keys_app->add_flag("--force", keys.force, "Replace key pairs that exist");
    add_log_level(*keys_app, common);

    app.footer([&app] { return cli::all_subcommands_help(app); });

    return cli::run_main(app, common, argc, argv, [&](cli::ToolContext& context) {
        if (*check_app) return route::run_check(check, context.log());
        if (*up_app) return route::run_up(up, context.log());
        if (*status_app) return route::run_status(status, context.log(), context.stop());
        if (*units_app) return route::run_units(units, context.log());
        if (*keys_app) return route::run_keys(keys, context.log());
        if (*test_app) return route::run_test(test, context.log(), context.stop());
        return route::run_graph(graph, context.log());
    });
}
