// mh-store: durable message history in LMDB. Subcommands append, query, tail, plot, stat, check and retain;
// the work is in lib/store.
#include "store/store_tool.h"

int main(int argc, char** argv) {
    using namespace mh;
    cli::CommonOptions common;  // filled by whichever subcommand runs
    store::AppendCommand append;
    store::QueryCommand query;
    store::StatCommand stat;
    store::CheckCommand check;
    store::RetainCommand retain;
    store::TailCommand tail;
    store::PlotCommand plot;

    CLI::App app{"Durable message history in LMDB: append frames, query them by time, source and "
                 "expression, and look at the store",
                 "mh-store"};
    app.set_version_flag("--version", cli::version_text("mh-store"));
    app.require_subcommand(1);

    auto* append_app = app.add_subcommand("append", "Store frames from stdin or --in, group committed");
    cli::add_common_options(*append_app, common, cli::Streams::in_and_out);
    append_app->remove_option(append_app->get_option("--out"));
    append_app->add_option("--db", append.db, "Store directory (created if missing)")->required();
    append_app->add_option("--batch", append.batch, "Most messages per commit")
        ->capture_default_str()
        ->check(CLI::Range(size_t{1}, size_t{1} << 20));
    append_app->add_option("--linger", append.linger, "Longest a message waits for its commit when input keeps coming")
        ->capture_default_str();
    append_app->add_option("--sync", append.sync,
                           "commit: fsync every commit; none: leave writing back to the OS (a machine crash "
                           "loses what it had not written)")
        ->capture_default_str()
        ->check(CLI::IsMember({"commit", "none"}));
    append_app->add_option("--confirm", append.confirm,
                           "Where checkpoint barriers go once everything before them is committed (an output spec)");
    append_app->add_option("--max-size", append.max_size,
                           "Largest the store may grow, in bytes or with K, M, G, T (default 1T)");
    append_app->add_option("--retain-age", append.retain_age,
                           "As it runs, delete messages whose event time is older than this (30d), as retain does");
    append_app->add_option("--retain-size", append.retain_size,
                           "As it runs, delete the oldest messages beyond this many frame bytes (K, M, G, T)");
    append_app->add_option("--wait-for-room", append.wait_for_room,
                           "When the disk or --max-size is full, hold the input this long, trying again every "
                           "second (default: stop at once with exit 74)");

    auto* query_app = app.add_subcommand("query", "Write stored messages in event-time order");
    cli::add_common_options(*query_app, common, cli::Streams::out_only);
    query_app->remove_option(query_app->get_option("--dead-letter"));
    query_app->remove_option(query_app->get_option("--metrics"));
    query_app->add_option("--db", query.db, "Store directory")->required();
    query_app->add_option("--from", query.from,
                          "Earliest event time (inclusive): RFC 3339, integer ns, now, or -1h for an hour ago");
    query_app->add_option("--to", query.to, "Latest event time (exclusive), as --from");
    query_app->add_option("--source", query.source, "Only this source's messages (reads only its index entries)");
    query_app->add_option("--where", query.where, "Only messages for which this expression is true");
    query_app->add_option("-n,--limit", query.limit, "Stop after this many messages (0: no limit)")
        ->capture_default_str()
        ->check(cli::unsigned_number());
    query_app->add_option("-t,--format", query.format, "Output format")
        ->capture_default_str()
        ->check(CLI::IsMember({"frames", "json", "csv", "text"}));
    query_app->add_option("--time-format", query.time_format, "How json and csv output write times")
        ->capture_default_str()
        ->check(CLI::IsMember({"ns", "rfc3339"}));
    query_app->add_option("--columns", query.columns, "CSV output columns (default: the first message's)")
        ->delimiter(',');
    query_app->add_flag("--progress", query.progress, "Show progress on stderr even when it is not a terminal");
    query_app->add_flag("--no-progress", query.no_progress, "No progress on stderr, even on a terminal");

    auto* tail_app = app.add_subcommand("tail", "Write stored messages in the order they came, then follow new ones");
    cli::add_common_options(*tail_app, common, cli::Streams::out_only);
    tail_app->remove_option(tail_app->get_option("--dead-letter"));
    tail_app->remove_option(tail_app->get_option("--metrics"));
    tail_app->add_option("--db", tail.db, "Store directory")->required();
    tail_app->add_option("--from", tail.from, "Start at this ingestion time: RFC 3339, integer ns, now, or -1h");
    tail_app->add_flag("--from-start", tail.from_start, "Start at the first message (the default without --follow)");
    tail_app->add_flag("-f,--follow", tail.follow, "Keep writing what is appended, until stopped");
    tail_app->add_option("--speed", tail.speed, "Replay at this many times the original pace (event-time gaps kept)");
    tail_app->add_option("-t,--format", tail.format, "Output format")
        ->capture_default_str()
        ->check(CLI::IsMember({"frames", "json", "csv", "text"}));
    tail_app->add_option("--time-format", tail.time_format, "How json and csv output write times")
        ->capture_default_str()
        ->check(CLI::IsMember({"ns", "rfc3339"}));
    tail_app->add_option("--columns", tail.columns, "CSV output columns (default: the first message's)")
        ->delimiter(',');
    tail_app->add_flag("--progress", tail.progress, "Show progress on stderr even when it is not a terminal");
    tail_app->add_flag("--no-progress", tail.no_progress, "No progress on stderr, even on a terminal");

    auto* plot_app = app.add_subcommand("plot", "Draw fields of sources over event time as an SVG line chart");
    plot_app->add_option("--db", plot.db, "Store directory")->required();
    plot_app->add_option("--source", plot.sources, "A source, or a glob of sources (repeatable)")->required();
    plot_app->add_option("--field", plot.fields, "A numeric field to draw (repeatable)")->required();
    plot_app->add_option("--from", plot.from, "Earliest event time (inclusive), as for query; default: the data's first");
    plot_app->add_option("--to", plot.to, "Latest event time (exclusive), as for query; default: after the data's last");
    plot_app->add_option("--unit", plot.units, "The unit of the values: one for every field, or one per --field");
    plot_app->add_option("--width", plot.width, "Picture width in pixels")
        ->capture_default_str()
        ->check(CLI::Range(240u, 20000u));
    plot_app->add_option("--height", plot.height, "Picture height in pixels")
        ->capture_default_str()
        ->check(CLI::Range(100u, 20000u));
    plot_app->add_option("--title", plot.title, "The chart's title (default: its fields and sources)");
    plot_app->add_option("-o,--output", plot.output, "The SVG file to write (- for stdout)")->capture_default_str();
    plot_app->add_option("--log-level", common.log_level, "error, warn, info or debug")
        ->capture_default_str()
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}));

    auto* stat_app = app.add_subcommand("stat", "Show what the store holds");
    stat_app->add_option("--db", stat.db, "Store directory")->required();
    stat_app->add_flag("--json", stat.json, "One JSON object instead of text");
    stat_app->add_option("--log-level", common.log_level, "error, warn, info or debug")
        ->capture_default_str()
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}));
    stat_app->set_version_flag("--version", cli::version_text("mh-store"));

    auto* check_app = app.add_subcommand("check", "Verify the store: exit 0 when sound, 65 otherwise");
    check_app->add_option("--db", check.db, "Store directory")->required();
    check_app->add_option("--log-level", common.log_level, "error, warn, info or debug")
        ->capture_default_str()
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}));
    check_app->set_version_flag("--version", cli::version_text("mh-store"));

    auto* retain_app = app.add_subcommand("retain", "Delete the oldest messages beyond an age or a size");
    retain_app->add_option("--db", retain.db, "Store directory")->required();
    retain_app->add_option("--max-age", retain.max_age, "Delete messages whose event time is older than this (30d, 12h)");
    retain_app->add_option("--max-size", retain.max_size,
                           "Delete the oldest messages until the frames take at most this many bytes (K, M, G, T)");
    retain_app->add_option("--log-level", common.log_level, "error, warn, info or debug")
        ->capture_default_str()
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}));

    app.footer([&app] { return cli::all_subcommands_help(app); });

    return cli::run_main(app, common, argc, argv, [&](cli::ToolContext& context) {
        if (*append_app) return store::run_append(append, context);
        if (*query_app) return store::run_query(query, context);
        if (*stat_app) return store::run_stat(stat, context);
        if (*retain_app) return store::run_retain(retain, context);
        if (*tail_app) return store::run_tail(tail, context);
        if (*plot_app) return store::run_plot(plot, context);
        return store::run_check(check, context);
    });
}
