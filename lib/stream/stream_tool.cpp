#include "stream/stream_tool.h"

#include "message/time.h"
#include "relay/pump.h"

#include <algorithm>

#include <cstdlib>

namespace mh::stream {

void add_mapping_options(CLI::App& app, MappingArgs& args) {
    auto& m = args.mapping;
    app.add_option("--source-key", m.source_key,
                   "A record field whose value is the message's source (dotted for nested: device.id); "
                   "it is taken out of the fields");
    app.add_option("--kind-key", m.kind_key, "A record field whose value is the message's kind");
    app.add_option("--kind", m.kind, "The kind of messages that get none from the record, the topic or --kind-key");
    app.add_option("--time-key", m.time_key,
                   "A record field whose value is the event time: epoch seconds, ms, us or ns, or RFC 3339 text");
    app.add_option("--time-unit", args.time_unit,
                   "The unit of epoch numbers under --time-key: s, ms, us, ns, or auto (by magnitude)")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "s", "ms", "us", "ns"}));
}

void add_mqtt_options(CLI::App& app, MqttCommand& command) {
    auto& o = command.mqtt;
    app.add_option("--broker", o.broker, "mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (8883, TLS)")->required();
    app.add_option("--topic", o.topics, "Topic filter to subscribe to, repeatable; + and # are wildcards")
        ->required()
        ->allow_extra_args(false);
    app.add_option("--qos", o.qos, "0 (at most once) or 1 (at least once, acknowledged once mapped)")
        ->capture_default_str()
        ->check(CLI::IsMember({0, 1}));
    app.add_option("--client-id", o.client_id,
                   "Client id; a named client keeps its session, so the broker holds QoS 1 messages while "
                   "it is away (default: a random id and a clean session)");
    app.add_option("--username", o.username, "User name for the broker");
    app.add_option("--password", o.password,
                   "Password for the broker (or MH_STREAM_PASSWORD in the environment, which ps does not show)");
    app.add_option("--cert", o.cert, "Client certificate (PEM) for mutual TLS; needs --key");
    app.add_option("--key", o.key, "Private key (PEM) of --cert");
    app.add_option("--cafile", o.cafile, "CA certificates (PEM) to trust for the broker (default: the system's)");
    app.add_option("--keepalive", o.keepalive_s, "Seconds between keepalive pings")
        ->capture_default_str()
        ->check(CLI::Range(5, 65535));
    app.add_option("--source-level", o.source_level,
                   "Topic level (from 0) that is the message's source: plant/+/telemetry with 1 takes the +");
    app.add_option("--kind-level", o.kind_level, "Topic level (from 0) that is the message's kind");
    add_mapping_options(app, command.mapping);
}

void add_http_options(CLI::App& app, HttpCommand& command) {
    auto& o = command.http;
    app.add_option("--url", o.url, "The JSON API to poll: http://... or https://...")->required();
    app.add_option("--interval", command.interval, "Time between the starts of two polls (500ms, 30s, 5m)")
        ->capture_default_str();
    app.add_option("--records", o.records,
                   "Dotted path to the records in the response (data.items); an array gives a record per element. "
                   "Default: the whole response");
    app.add_option("--key", o.key,
                   "Dotted path to a record's identity (id): a record whose key was in the previous poll is "
                   "dropped. Default: the record's whole JSON");
    app.add_option("--header", o.headers, "'Name: value' sent with every request, repeatable (Authorization: ...)")
        ->allow_extra_args(false);
    app.add_option("--timeout", command.timeout, "Longest a poll may take")->capture_default_str();
    app.add_option("--cafile", o.cafile, "CA certificates (PEM) to trust for https (default: the system's)");
    app.add_option("--max-response", o.max_response_bytes, "Largest response accepted, in bytes")
        ->capture_default_str()
        ->check(CLI::Range(size_t{1}, size_t{1} << 32));
    add_mapping_options(app, command.mapping);
}

void add_file_options(CLI::App& app, FileCommand& command) {
    auto& o = command.file;
    app.add_option("--path", o.path, "The file to follow, like tail -F: rotation and truncation are handled")
        ->required();
    app.add_option("--format", o.format, "json (an object per line) or csv (a header line, then rows)")
        ->capture_default_str()
        ->check(CLI::IsMember({"json", "csv"}));
    app.add_option("--position-file", o.position_file,
                   "Where the read position is kept (saved atomically), so a restart neither loses nor repeats "
                   "a line; without it every run starts afresh");
    app.add_flag("--from-end", o.from_end, "Without a saved position, skip what the file already holds");
    app.add_option("--poll", command.poll, "How often an idle file is looked at for growth, rotation and truncation")
        ->capture_default_str();
    add_mapping_options(app, command.mapping);
}

namespace {

ingest::MappingOptions mapping_of(const MappingArgs& args) {
    ingest::MappingOptions mapping = args.mapping;
    mapping.time_unit = ingest::parse_time_unit(args.time_unit).value_or(ingest::TimeUnit::automatic);
    return mapping;
}

// Pumps `source` to every --out until it ends or a stop is requested.
int pump_out(wire::FrameSource& source, cli::ToolContext& context) {
    std::vector<std::string> outputs = context.options().out;
    if (outputs.empty()) outputs.push_back("-");
    std::vector<std::unique_ptr<wire::FrameSink>> sinks;
    std::vector<wire::FrameSink*> sink_pointers;
    for (const auto& spec : outputs) {
        sinks.push_back(context.open_frame_sink(spec));
        sink_pointers.push_back(sinks.back().get());
    }
    relay::FlowCounters counters(context.metrics());
    relay::PumpOptions options;
    options.check = relay::Check::framing_only;  // frames we built ourselves
    options.limits = context.limits();
    auto result = relay::pump(source, sink_pointers, counters, options, context.log());
    context.log().info("stopped after {} messages ({} records rejected)", result.messages, source.rejected());
    return 0;
}

}  // namespace

int run_mqtt(const MqttCommand& command, cli::ToolContext& context) {
    MqttOptions options = command.mqtt;
    if (options.password.empty())
        if (const char* password = std::getenv("MH_STREAM_PASSWORD")) options.password = password;
    MqttSource source(options, mapping_of(command.mapping), &context.stop(), context.log(), context.limits());
    return pump_out(source, context);
}

namespace {
std::chrono::milliseconds duration_option(const std::string& name, const std::string& text) {
    auto ns = parse_duration_ns(text);
    if (!ns || *ns <= 0)
        throw Error(ExitCode::usage, fmt::format("{} '{}': expected a duration such as 500ms, 30s or 5m", name, text));
    return std::chrono::milliseconds(std::max<int64_t>(1, *ns / k_ns_per_ms));
}
}  // namespace

int run_http(const HttpCommand& command, cli::ToolContext& context) {
    HttpOptions options = command.http;
    options.interval = duration_option("--interval", command.interval);
    options.timeout = duration_option("--timeout", command.timeout);
    HttpSource source(options, mapping_of(command.mapping), &context.stop(), context.log(), context.metrics(),
                      context.limits());
    return pump_out(source, context);
}

int run_file(const FileCommand& command, cli::ToolContext& context) {
    FileOptions options = command.file;
    options.poll = duration_option("--poll", command.poll);
    FileSource source(options, mapping_of(command.mapping), &context.stop(), context.log(), context.limits());
    int status = pump_out(source, context);
    source.save_delivered();  // everything handed out has been written and flushed
    return status;
}

}  // namespace mh::stream
