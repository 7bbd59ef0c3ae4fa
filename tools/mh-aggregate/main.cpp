// mh-aggregate: time windows per group of keys, aggregates and sketches, anomaly
// detectors, state kept across restarts. The work is in lib/aggregate.
#include "aggregate/run.h"

int main(int argc, char** argv) {
    mh::aggregate::AggregateOptions options;
    CLI::App app{
        "Aggregate messages over time windows per group (--by), one 'aggregate' message per "
        "window and group; detect anomalies per group (--detect). See man mh-aggregate.",
        "mh-aggregate"};
    mh::cli::add_common_options(app, options.common, mh::cli::Streams::in_and_out);
    app.add_option("-w,--window", options.window,
                   "Tumbling windows of this length (10s, 1m), or hopping ones with --hop");
    app.add_option("--hop", options.hop, "Start a window every HOP (hopping windows, HOP <= --window)");
    app.add_option("--session", options.session,
                   "Session windows: a group's window ends after this long without a message");
    app.add_option("-b,--by", options.by,
                   "Group keys (comma list or repeated): source, gateway, kind, or any field name")
        ->delimiter(',')
        ->allow_extra_args(false);
    app.add_option("-a,--agg", options.agg,
                   "Aggregates, one comma list: count(), sum(f), min(f), max(f), mean(f), stddev(f), "
                   "first(f), last(f), rate(), rate(f), pNN(f), median(f), distinct(f), each optionally "
                   "'as NAME'")
        ->capture_default_str();
    app.add_option("--lateness", options.lateness,
                   "Event time: the watermark trails the largest time seen by this much")
        ->capture_default_str();
    app.add_option("--clock", options.clock, "event (message time) or wall (arrival time)")
        ->capture_default_str();
    app.add_option("--idle", options.idle,
                   "Close every open window when no message has come for this long (wall time)");
    app.add_option("--late", options.late,
                   "Where late messages go (an output spec); otherwise they are counted and dropped");
    app.add_option("--max-groups", options.max_groups,
                   "Groups kept at most; beyond, the least recently seen is evicted (its windows "
                   "emitted early, counted)")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
    app.add_option("-d,--detect", options.detect,
                   "Detector rule per group, repeatable: '[NAME=]zscore(f[, alpha]) > K', "
                   "'stuck(f, DURATION)', 'silence(DURATION)'")
        ->allow_extra_args(false);
    app.add_option("--state", options.state,
                   "Directory of an LMDB snapshot of open windows and detectors, saved at each "
                   "barrier, on SIGTERM and every --state-every; restored on start");
    app.add_option("--state-every", options.state_every, "Interval between --state snapshots (wall time)")
        ->capture_default_str();
    app.add_flag("--reset-state", options.reset_state,
                 "Discard what --state DIR holds (corrupt, or saved with other options) and start empty");
    return mh::cli::run_main(app, options.common, argc, argv, [&](mh::cli::ToolContext& context) {
        return mh::aggregate::run(options, context);
    });
}
