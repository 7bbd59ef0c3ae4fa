// mh-filter's loop: relay::pump with a Filter in the middle. Frames are checked once,
// passing ones go to every --out, rejected ones to --rejects, alerts to --alert-out or
// into the data stream, barriers to all of them; outputs flush when the input goes idle.
#include "core/error.h"
#include "filter/filter.h"
#include "message/time.h"
#include "relay/pump.h"

#include <chrono>

namespace mh::filter {
namespace {

// Messages between counter updates, clock reads and linger checks.
constexpr uint64_t k_publish_every = 1024;
constexpr auto k_linger = std::chrono::milliseconds(1);
constexpr std::string_view k_dropped_name = "mh_dropped_total";
constexpr std::string_view k_dropped_help = "Messages dropped, by reason";

metrics::Counter& dropped(metrics::Registry& registry, std::string_view reason) {
    return registry.counter(std::string(k_dropped_name), std::string(k_dropped_help),
                            fmt::format("reason=\"{}\"", reason));
}

// The counters on --metrics: the flow counters every tool has, and the filter's own.
struct FilterCounters {
    explicit FilterCounters(metrics::Registry& registry)
        // The registry renders entries in registration order, and Prometheus wants all
        // samples of a name together: every mh_dropped_total reason is registered before
        // FlowCounters adds its other names.
        : malformed(dropped(registry, "malformed")),
          limit(dropped(registry, "limit")),
          filtered(dropped(registry, "filtered")),
          duplicate(dropped(registry, "duplicate")),
          sampled(dropped(registry, "sampled")),
          flow(registry),
          rejected(registry.counter("mh_rejected_total",
                                    "Messages that failed the expression, sent to --rejects")),
          alerts(registry.counter("mh_alerts_total", "Alert messages raised by --alert rules")),
          evicted(registry.counter(
              "mh_dedup_evicted_total",
              "Ids forgotten before their --dedup window ended because --dedup-max was reached")) {}
    metrics::Counter& malformed;
    metrics::Counter& limit;
    metrics::Counter& filtered;
    metrics::Counter& duplicate;
    metrics::Counter& sampled;
    relay::FlowCounters flow;
    metrics::Counter& rejected;
    metrics::Counter& alerts;
    metrics::Counter& evicted;
};

// Counts kept locally and published in batches: atomics cost on the per-message path.
class Publisher {
  public:
    Publisher(FilterCounters& counters, const Filter& filter, const wire::FrameSource& source,
              bool rejects)
        : m_counters(counters), m_filter(filter), m_source(source), m_rejects(rejects) {}

    uint64_t in = 0, out = 0, bytes_in = 0, bytes_out = 0, garbled = 0;

    void publish() {
        auto& flow = m_counters.flow;
        flow.messages_in.add(in);
        flow.messages_out.add(out);
        flow.bytes_in.add(bytes_in);
        flow.bytes_out.add(bytes_out);
        uint64_t rejected = m_source.rejected();
        flow.dropped_malformed.add(garbled + rejected - m_source_rejected);
        m_source_rejected = rejected;
        in = out = bytes_in = bytes_out = garbled = 0;

        const FilterStats& now = m_filter.stats();
        (m_rejects ? m_counters.rejected : m_counters.filtered).add(now.filtered - m_last.filtered);
        m_counters.duplicate.add(now.duplicate - m_last.duplicate);
        m_counters.sampled.add(now.sampled - m_last.sampled);
        m_counters.alerts.add(now.alerts - m_last.alerts);
        m_last = now;
        uint64_t evicted = m_filter.dedup_evicted();
        m_counters.evicted.add(evicted - m_evicted);
        m_evicted = evicted;
    }

  private:
    FilterCounters& m_counters;
    const Filter& m_filter;
    const wire::FrameSource& m_source;
    bool m_rejects;
    FilterStats m_last;
    uint64_t m_source_rejected = 0;
    uint64_t m_evicted = 0;
};

}  // namespace

int run(const FilterOptions& options, cli::ToolContext& context) {
    // Compile first: a bad expression is reported before any socket or file is opened.
    Filter filter(options.rules, context.limits(), context.log());

    auto source = context.open_frame_source(context.options().in);
    std::vector<std::string> outputs = context.options().out;
    if (outputs.empty()) outputs.push_back("-");
    std::vector<std::unique_ptr<wire::FrameSink>> owned;
    std::vector<wire::FrameSink*> data_sinks, all_sinks;
    for (const auto& spec : outputs) {
        owned.push_back(context.open_frame_sink(spec));
        data_sinks.push_back(owned.back().get());
    }
    all_sinks = data_sinks;
    auto open_extra = [&](const std::string& spec) -> wire::FrameSink* {
        if (spec.empty()) return nullptr;
        owned.push_back(context.open_frame_sink(spec));
        all_sinks.push_back(owned.back().get());
        return owned.back().get();
    };
    wire::FrameSink* rejects = open_extra(options.rejects);
    wire::FrameSink* alert_out = open_extra(options.alert_out);
    std::unique_ptr<wire::FrameSink> dead_letter;
    if (!context.options().dead_letter.empty())
        dead_letter = context.open_frame_sink(context.options().dead_letter);
    if (alert_out && !filter.has_alerts())
        context.log().warn("--alert-out without any --alert gets only barriers");

    FilterCounters counters(context.metrics());
    Publisher local(counters, filter, *source, rejects != nullptr);
    auto flush_all = [&] {
        for (auto* sink : all_sinks) sink->flush();
        if (dead_letter) dead_letter->flush();
    };
    auto last_flush = std::chrono::steady_clock::now();
    int64_t now_ns = wall_clock_ns();  // what now() gives: read once per batch, not per message
    wire::Frame frame;
    for (;;) {
        wire::Next next = source->next(wire::Wait::no, frame);
        if (next == wire::Next::idle) {
            flush_all();
            local.publish();
            next = source->next(wire::Wait::yes, frame);
            last_flush = std::chrono::steady_clock::now();
            now_ns = wall_clock_ns();
        }
        if (next == wire::Next::end) break;
        if (next == wire::Next::broken) {
            flush_all();
            local.publish();
            counters.flow.errors.add();
            throw Error(ExitCode::data, source->error());
        }
        if (next != wire::Next::frame) continue;

        ++local.in;
        local.bytes_in += frame.byte_count();
        Decision decision = filter.process(frame, now_ns);
        switch (decision.verdict) {
            case Verdict::garbled:
                ++local.garbled;
                context.log().warn("dropped a garbled frame of {} bytes: {}", frame.byte_count(),
                                   decision.reason);
                if (dead_letter) dead_letter->write(frame);
                break;
            case Verdict::barrier:
                for (auto* sink : all_sinks) sink->write(decision.frame);
                ++local.out;
                local.bytes_out += decision.frame.byte_count();
                break;
            case Verdict::pass:
                for (auto* sink : data_sinks) sink->write(decision.frame);
                ++local.out;
                local.bytes_out += decision.frame.byte_count();
                // An alert is a message this tool sends like any other: counted as out, so
                // that in + alerts = out + dropped holds, and mh-route drains its readers by
                // counts.
                for (const auto& alert : decision.alerts) {
                    if (alert_out)
                        alert_out->write(alert);
                    else
                        for (auto* sink : data_sinks) sink->write(alert);
                    ++local.out;
                    local.bytes_out += alert.byte_count();
                }
                break;
            case Verdict::filtered:
                if (rejects) rejects->write(decision.frame);
                break;
            case Verdict::duplicate:
            case Verdict::sampled:
                break;
        }
        if (local.in >= k_publish_every) {
            local.publish();
            now_ns = wall_clock_ns();
            // A source that is never idle but slow to fill a batch must not hold data back.
            auto now = std::chrono::steady_clock::now();
            if (now - last_flush >= k_linger) {
                flush_all();
                last_flush = now;
            }
        }
    }
    flush_all();
    local.publish();
    const FilterStats& stats = filter.stats();
    context.log().debug(
        "{} messages in, {} passed ({} rebuilt), {} filtered, {} duplicate, {} sampled, {} alerts",
        stats.messages, stats.passed, stats.rebuilt, stats.filtered, stats.duplicate, stats.sampled,
        stats.alerts);
    if (context.stop().load()) context.log().info("stopped after {} messages", stats.messages);
    if (uint64_t evicted = filter.dedup_evicted())
        context.log().warn("--dedup-max forced out {} ids before their window ended", evicted);
    return 0;
}

}  // namespace mh::filter
