// mh-aggregate's loop. Frames are checked once; data goes through the Aggregator, whose
// output (aggregates, alerts) goes to every --out; late messages go to --late; barriers
// go to every output after everything before them. When timers matter (--clock wall,
// --idle, --state) an idle input is polled at a short interval instead of waited on,
// since a FrameSource has no timed wait.
#include "aggregate/run.h"

#include "aggregate/state.h"

#include "core/error.h"
#include "message/time.h"
#include "relay/pump.h"

#include <chrono>
#include <thread>

namespace mh::aggregate {
namespace {

constexpr uint64_t k_publish_every = 1024;  // messages between counter updates and clock reads
constexpr auto k_linger = std::chrono::milliseconds(1);
constexpr auto k_timer_poll = std::chrono::milliseconds(10);

int64_t duration_option(std::string_view option, const std::string& text) {
    auto ns = parse_duration_ns(text);
    if (!ns || *ns <= 0)
        throw Error(ExitCode::usage,
                    fmt::format("{} '{}' is not a positive duration (250ms, 10s, 5m, 1h)", option, text));
    return *ns;
}

struct Counters {
    explicit Counters(metrics::Registry& registry)
        : malformed(registry.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"malformed\"")),
          late_dropped(registry.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"late\"")),
          flow(registry),
          late(registry.counter("mh_aggregate_late_total",
                                "Messages whose windows had all closed (sent to --late when given)")),
          windows(registry.counter("mh_aggregate_windows_total", "Aggregate messages emitted")),
          alerts(registry.counter("mh_aggregate_alerts_total", "Alert messages raised by --detect rules")),
          evicted(registry.counter("mh_aggregate_evicted_total",
                                   "Groups evicted by --max-groups (their open windows emitted early)")),
          snapshots(registry.counter("mh_aggregate_snapshots_total", "State snapshots written to --state")) {}
    metrics::Counter& malformed;
    metrics::Counter& late_dropped;
    relay::FlowCounters flow;
    metrics::Counter& late;
    metrics::Counter& windows;
    metrics::Counter& alerts;
    metrics::Counter& evicted;
    metrics::Counter& snapshots;
};

}  // namespace

AggregatorConfig make_config(const AggregateOptions& options) {
    AggregatorConfig config;
    if (!options.session.empty()) {
        if (!options.window.empty() || !options.hop.empty())
            throw Error(ExitCode::usage, "--session excludes --window and --hop: pick one kind of window");
        config.window = WindowKind::session;
        config.gap_ns = duration_option("--session", options.session);
    } else if (!options.window.empty()) {
        config.size_ns = duration_option("--window", options.window);
        if (!options.hop.empty()) {
            config.window = WindowKind::hopping;
            config.hop_ns = duration_option("--hop", options.hop);
        }
    } else {
        throw Error(ExitCode::usage, "no window: give --window DURATION (with --hop for hopping) or --session GAP");
    }
    auto lateness = parse_duration_ns(options.lateness);
    if (!lateness || *lateness < 0)
        throw Error(ExitCode::usage, fmt::format("--lateness '{}' is not a duration (0, 5s, 1m)", options.lateness));
    config.lateness_ns = *lateness;
    if (options.clock == "wall")
        config.clock = Clock::wall;
    else if (options.clock != "event")
        throw Error(ExitCode::usage, fmt::format("--clock '{}': expected event or wall", options.clock));
    config.max_groups = options.max_groups;
    config.keys = parse_keys(options.by);
    config.aggs = parse_aggregates(options.agg);
    for (const auto& rule : options.detect) config.detects.push_back(parse_detect(rule));
    return config;
}

int run(const AggregateOptions& options, cli::ToolContext& context) {
    Aggregator aggregator(make_config(options), context.limits(), context.log());
    const int64_t idle_ns = options.idle.empty() ? 0 : duration_option("--idle", options.idle);
    const bool wall = aggregator.config().clock == Clock::wall;
    const bool keep_state = !options.state.empty();
    if (options.reset_state && !keep_state) throw Error(ExitCode::usage, "--reset-state needs --state DIR");
    const int64_t state_every_ns = duration_option("--state-every", options.state_every);
    const bool timers = wall || idle_ns > 0 || keep_state;

    // Restore before opening any input: a bad state is reported before anything is read.
    std::unique_ptr<StateStore> state;
    if (keep_state) {
        state = std::make_unique<StateStore>(options.state, options.reset_state, context.log());
        if (auto snapshot = state->load()) {
            if (snapshot->fingerprint != aggregator.fingerprint())
                throw Error(ExitCode::config,
                            fmt::format("the state in {} was saved with other --window, --hop, --session, "
                                        "--lateness, --clock, --by, --agg or --detect options; run with the "
                                        "same ones, or restart with --reset-state to discard it",
                                        options.state));
            if (auto error = aggregator.load(std::as_bytes(std::span(snapshot->bytes.data(), snapshot->bytes.size()))))
                throw Error(ExitCode::config,
                            fmt::format("the state in {} is corrupt ({}); restart with --reset-state to "
                                        "discard it (its open windows and detector state are lost)",
                                        options.state, *error));
            context.log().info("restored state from {} ({}saved {}): {} groups, {} open windows", options.state,
                               snapshot->barrier ? fmt::format("barrier {}, ", snapshot->barrier) : "",
                               format_rfc3339(snapshot->saved_ns), aggregator.groups(),
                               aggregator.open_windows());
        }
    }
    std::string snapshot_bytes;
    int64_t last_save_ns = wall_clock_ns();

    auto source = context.open_frame_source(context.options().in);
    std::vector<std::string> outputs = context.options().out;
    if (outputs.empty()) outputs.push_back("-");
    std::vector<std::unique_ptr<wire::FrameSink>> owned;
    std::vector<wire::FrameSink*> data_sinks;
    for (const auto& spec : outputs) {
        owned.push_back(context.open_frame_sink(spec));
        data_sinks.push_back(owned.back().get());
    }
    wire::FrameSink* late_sink = nullptr;
    if (!options.late.empty()) {
        owned.push_back(context.open_frame_sink(options.late));
        late_sink = owned.back().get();
    }
    std::unique_ptr<wire::FrameSink> dead_letter;
    if (!context.options().dead_letter.empty())
        dead_letter = context.open_frame_sink(context.options().dead_letter);

    Counters counters(context.metrics());
    uint64_t in = 0, out = 0, bytes_in = 0, bytes_out = 0, garbled = 0, source_rejected = 0;
    AggregatorStats published;
    auto publish = [&] {
        counters.flow.messages_in.add(in);
        counters.flow.messages_out.add(out);
        counters.flow.bytes_in.add(bytes_in);
        counters.flow.bytes_out.add(bytes_out);
        uint64_t rejected = source->rejected();
        counters.malformed.add(garbled + rejected - source_rejected);
        source_rejected = rejected;
        in = out = bytes_in = bytes_out = garbled = 0;
        const AggregatorStats& now = aggregator.stats();
        counters.late.add(now.late - published.late);
        if (!late_sink) counters.late_dropped.add(now.late - published.late);
        counters.windows.add(now.windows - published.windows);
        counters.alerts.add(now.alerts - published.alerts);
        counters.evicted.add(now.evicted - published.evicted);
        published = now;
    };
    auto flush_all = [&] {
        for (auto* sink : data_sinks) sink->flush();
        if (late_sink) late_sink->flush();
        if (dead_letter) dead_letter->flush();
    };
    auto write_output = [&] {
        if (!aggregator.has_output()) return;
        for (const auto& frame : aggregator.output()) {
            for (auto* sink : data_sinks) sink->write(frame);
            ++out;
            bytes_out += frame.byte_count();
        }
        aggregator.take_output();
    };

    auto save = [&](uint64_t barrier) {
        aggregator.save(snapshot_bytes);
        state->save(aggregator.fingerprint(), barrier, snapshot_bytes);
        counters.snapshots.add();
        last_save_ns = wall_clock_ns();
        context.log().debug("saved state to {}{}: {} groups, {} open windows, {} bytes", options.state,
                            barrier ? fmt::format(" at barrier {}", barrier) : "", aggregator.groups(),
                            aggregator.open_windows(), snapshot_bytes.size());
    };

    int64_t last_input_ns = wall_clock_ns();
    bool idle_closed = true;  // nothing open yet
    auto on_timers = [&](int64_t now_ns) {
        if (wall) aggregator.tick(now_ns);
        if (idle_ns > 0 && !idle_closed && now_ns - last_input_ns >= idle_ns) {
            context.log().debug("input idle for {}, closing {} open windows", options.idle,
                                aggregator.open_windows());
            aggregator.close_all(now_ns);
            idle_closed = true;
        }
        write_output();
        if (state && now_ns - last_save_ns >= state_every_ns) save(0);
    };

    auto last_flush = std::chrono::steady_clock::now();
    int64_t now_ns = wall_clock_ns();
    wire::Frame frame;
    for (;;) {
        wire::Next next = source->next(wire::Wait::no, frame);
        if (next == wire::Next::idle) {
            // The input just went quiet: --idle counts from here.
            if (!idle_closed) last_input_ns = wall_clock_ns();
            flush_all();
            publish();
            if (!timers) {
                next = source->next(wire::Wait::yes, frame);
            } else {
                for (;;) {
                    now_ns = wall_clock_ns();
                    on_timers(now_ns);
                    flush_all();
                    next = source->next(wire::Wait::no, frame);
                    if (next != wire::Next::idle) break;
                    std::this_thread::sleep_for(k_timer_poll);
                }
            }
            last_flush = std::chrono::steady_clock::now();
            now_ns = wall_clock_ns();
        }
        if (next == wire::Next::end) break;
        if (next == wire::Next::broken) {
            write_output();
            flush_all();
            publish();
            counters.flow.errors.add();
            throw Error(ExitCode::data, source->error());
        }
        if (next != wire::Next::frame) continue;

        ++in;
        bytes_in += frame.byte_count();
        if (wall) now_ns = wall_clock_ns();
        Disposition disposition = aggregator.process(frame, now_ns);
        switch (disposition) {
            case Disposition::garbled:
                ++garbled;
                context.log().warn("dropped a garbled frame of {} bytes: {}", frame.byte_count(),
                                   aggregator.garbled_reason());
                if (dead_letter) dead_letter->write(frame);
                break;
            case Disposition::used:
                break;
            case Disposition::late:
                if (late_sink) late_sink->write(frame);
                break;
            case Disposition::barrier:
                write_output();
                // The snapshot holds everything before the barrier, and nothing after it.
                if (state) save(aggregator.stats().last_barrier);
                for (auto* sink : data_sinks) sink->write(frame);
                if (late_sink) late_sink->write(frame);
                ++out;
                bytes_out += frame.byte_count();
                break;
        }
        if (disposition != Disposition::garbled) {
            write_output();
            idle_closed = false;
        }
        if (in >= k_publish_every) {
            publish();
            now_ns = wall_clock_ns();
            last_input_ns = now_ns;  // busy input is not idle
            if (timers) on_timers(now_ns);
            auto now = std::chrono::steady_clock::now();
            if (now - last_flush >= k_linger) {
                flush_all();
                last_flush = now;
            }
        }
    }
    now_ns = wall_clock_ns();
    const bool stopped = context.stop().load();
    if (stopped && state) {
        // Open windows are saved, not emitted: the next run continues them.
        save(0);
        context.log().info("stopped: {} open windows of {} groups saved to {}", aggregator.open_windows(),
                           aggregator.groups(), options.state);
    } else {
        aggregator.close_all(now_ns);
        write_output();
        if (state) save(0);  // what is left: detector state, and the watermark
    }
    flush_all();
    publish();
    const AggregatorStats& stats = aggregator.stats();
    context.log().debug("{} messages in, {} windows out, {} late, {} alerts, {} groups evicted",
                        stats.messages, stats.windows, stats.late, stats.alerts, stats.evicted);
    if (stopped) context.log().info("stopped after {} messages", stats.messages);
    if (stats.evicted)
        context.log().warn("--max-groups evicted {} groups, emitting {} windows early", stats.evicted,
                           stats.evicted_windows);
    return 0;
}

}  // namespace mh::aggregate
