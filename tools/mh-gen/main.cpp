// mh-gen: simulates a fleet of sensors behind field gateways and writes their telemetry
// as frames, for demos, tests of detectors and load. The work is in lib/gen.
#include "gen/gen.h"

int main(int argc, char** argv) {
    mh::gen::GenOptions options;
    CLI::App app{"Simulate origins: sensors behind field gateways sending telemetry frames", "mh-gen"};
    mh::cli::add_common_options(app, options.common, mh::cli::Streams::out_only);
    app.remove_option(app.get_option("--dead-letter"));  // mh-gen reads no frames to reject
    const CLI::Validator unsigned_number = mh::cli::unsigned_number();

    app.add_option("--sources", options.sources, "Number of simulated sources (sensor-000001, ...)")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{1}, mh::gen::k_max_sources));
    app.add_option("--gateways", options.gateways, "Number of gateways (gw-01, ...); sources are spread evenly")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{1}, mh::gen::k_max_sources));
    app.add_option("--rate", options.rate, "Messages per second of wall clock, all sources together; 0 = as fast as possible")
        ->capture_default_str();
    app.add_option("--count", options.count, "Stop after this many messages; 0 = unbounded")
        ->capture_default_str()
        ->check(unsigned_number);
    app.add_option("--duration", options.duration, "Stop after this much wall-clock time (30s, 5m, 1h)")
        ->default_str("unbounded");
    app.add_option("--seed", options.seed, "Seed: the same options and seed give byte-identical frames")
        ->default_str("from the clock and /dev/urandom")
        ->check(unsigned_number);
    app.add_option("--start", options.start,
                   "Event time of the first message: RFC 3339, integer ns, or now")
        ->default_str("now; 2026-01-01T00:00:00Z with --seed");
    app.add_option("--interval", options.interval, "Event time between two reports of one source (1s, 250ms)")
        ->default_str("sources/rate seconds with --rate, else 1s");
    app.add_option("--field", options.field_specs,
                   "NAME=DIST, repeatable, replaces the default fields; DIST is normal(mean,stddev), "
                   "uniform(lo,hi), walk(start,step), const(v) or int(lo,hi)")
        ->allow_extra_args(false)
        ->default_str("none: the default fields");
    app.add_option("--fields", options.fields, "Keep these default fields only (comma list)")
        ->delimiter(',')
        ->default_str("temperature,humidity,pressure,battery");
    app.add_option("--anomalies", options.anomalies,
                   "Probability (0 to 1) per message that an anomaly episode starts for its source")
        ->capture_default_str();
    app.add_option("--anomaly-kinds", options.anomaly_kinds, "Kinds of anomaly episode (comma list)")
        ->delimiter(',')
        ->check(CLI::IsMember({"spike", "stuck", "silent"}))
        ->default_str("spike,stuck,silent");
    app.add_option("--episode", options.episode, "Reports per stuck or silent episode")
        ->capture_default_str()
        ->check(unsigned_number);
    app.add_flag("--label-anomalies", options.label_anomalies,
                 "Add a text field 'anomaly' (spike, stuck, silent-end) to affected messages");

    auto* connect = app.add_option("--connect", options.connect,
                                   "Act as the gateways: send to an mh-endpoint's native listener, "
                                   "tls://HOST:PORT (tcp://HOST:PORT if it runs --insecure-loopback)");
    app.add_option("--token", options.tokens, "GATEWAY=TOKEN, repeatable: how a gateway logs in with --connect")
        ->allow_extra_args(false)
        ->needs(connect);
    app.add_option("--tokens", options.tokens_file, "A file of 'GATEWAY TOKEN' lines, for --connect")->needs(connect);
    app.add_option("--ca", options.ca_file, "CA certificate that signed the endpoint's (PEM), for --connect")
        ->needs(connect);
    app.add_option("--cert", options.cert_file, "Client certificate (PEM) that logs the gateway in, for --connect")
        ->needs(connect);
    app.add_option("--key", options.key_file, "Key of --cert (PEM)")->needs(connect);
    app.add_flag("--answer-commands", options.answer_commands,
                 "With --connect: log each command a gateway receives and reply to it (kind command-reply, "
                 "its correlation_id, result \"done\")")
        ->needs(connect);

    return mh::cli::run_main(app, options.common, argc, argv,
                             [&](mh::cli::ToolContext& context) { return mh::gen::run(options, context); });
}
