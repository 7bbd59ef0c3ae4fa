#include "gen/gen.h"

#include "endpoint/native.h"
#include "message/time.h"
#include "relay/pump.h"
#include "zmq/endpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <limits>
#include <random>

namespace mh::gen {
namespace {

constexpr uint64_t k_batch_slots = 1024;            // slots between looks at the clock and stop flag
constexpr int64_t k_pacing_tick_ns = 1'000'000;     // paced runs wake up at most about every 1 ms
constexpr int64_t k_max_sleep_ns = 100'000'000;     // re-check the stop flag at least every 100 ms
constexpr int64_t k_progress_every_ns = 250'000'000;
constexpr uint64_t k_progress_check_frames = 4096;  // frames between clock reads for progress
constexpr size_t k_min_source_digits = 6;
constexpr size_t k_min_gateway_digits = 2;
constexpr std::string_view k_source_prefix = "sensor-";
constexpr std::string_view k_gateway_prefix = "gw-";
constexpr std::string_view k_label_field = "anomaly";
constexpr uint64_t k_id_seed_salt = 0x1d5e'ed00'c0ff'ee11ULL;  // ids draw from a stream of their own

int64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * k_ns_per_second + ts.tv_nsec;
}

// Returns early on a signal (EINTR); callers look at the stop flag and the clock again.
void sleep_until_ns(int64_t monotonic_deadline_ns) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(monotonic_deadline_ns / k_ns_per_second);
    ts.tv_nsec = static_cast<long>(monotonic_deadline_ns % k_ns_per_second);
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
}

uint64_t entropy_seed() {
    uint64_t seed = static_cast<uint64_t>(wall_clock_ns());
    try {
        std::random_device device;  // /dev/urandom on Linux
        seed ^= (static_cast<uint64_t>(device()) << 32) ^ device();
    } catch (const std::exception&) {
        // No entropy source: the clock alone still gives a different run each time.
    }
    return SplitMix64(seed).next();
}

size_t digits(uint64_t n) {
    size_t count = 1;
    while (n >= 10) {
        n /= 10;
        ++count;
    }
    return count;
}

std::string numbered_name(std::string_view prefix, uint64_t number, size_t width) {
    return fmt::format("{}{:0{}}", prefix, number, width);
}

[[noreturn]] void usage(const std::string& message) { throw Error(ExitCode::usage, message); }

int64_t parse_duration_option(const std::string& option, const std::string& text) {
    auto ns = parse_duration_ns(text);
    if (!ns || *ns <= 0)
        usage(fmt::format("{} '{}': expected a positive duration such as 500ms, 30s, 5m, 1h30m or 2d", option, text));
    return *ns;
}

std::vector<AnomalyKind> parse_anomaly_kinds(const std::vector<std::string>& items) {
    std::vector<AnomalyKind> kinds;
    for (const auto& item : items) {
        // Accept "spike,stuck" in one item too, as tests and shells hand it over.
        std::string_view rest = item;
        while (true) {
            const size_t comma = rest.find(',');
            std::string_view word = rest.substr(0, comma);
            AnomalyKind kind;
            if (word == "spike")
                kind = AnomalyKind::spike;
            else if (word == "stuck")
                kind = AnomalyKind::stuck;
            else if (word == "silent")
                kind = AnomalyKind::silent;
            else
                usage(fmt::format("--anomaly-kinds: '{}' is not an anomaly kind; expected spike, stuck or silent",
                                  word));
            if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) kinds.push_back(kind);
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    if (kinds.empty()) usage("--anomaly-kinds: give at least one of spike, stuck, silent");
    return kinds;
}

std::string format_rate(double per_second) {
    if (per_second >= 1e6) return fmt::format("{:.1f} M/s", per_second / 1e6);
    if (per_second >= 1e3) return fmt::format("{:.1f} k/s", per_second / 1e3);
    return fmt::format("{:.0f}/s", per_second);
}

// Shows how far a finite run is, on one line of the terminal rewritten in place.
class ProgressSource final : public wire::FrameSource {
public:
    ProgressSource(wire::FrameSource& inner, uint64_t count, int64_t duration_ns)
        : m_inner(inner), m_count(count), m_duration_ns(duration_ns), m_t0_ns(monotonic_ns()) {}
    ~ProgressSource() override {
        if (m_drawn) write_stderr("\r\033[K");
    }

    wire::Next next(wire::Wait wait, wire::Frame& frame) override {
        wire::Next next = m_inner.next(wait, frame);
        if (next == wire::Next::frame) {
            if (++m_frames < m_next_check) return next;
            m_next_check = m_frames + k_progress_check_frames;
        } else if (next != wire::Next::idle) {
            return next;
        }
        const int64_t now = monotonic_ns();
        if (now - m_last_draw_ns >= k_progress_every_ns) {
            m_last_draw_ns = now;
            draw(now);
        }
        return next;
    }
    std::string error() const override { return m_inner.error(); }

private:
    void draw(int64_t now) {
        const double seconds = static_cast<double>(now - m_t0_ns) / 1e9;
        const std::string rate = seconds > 0 ? format_rate(static_cast<double>(m_frames) / seconds) : "";
        std::string line;
        if (m_count)
            line = fmt::format("\rmh-gen: {} of {} messages ({:.0f}%), {}\033[K", m_frames, m_count,
                               100.0 * static_cast<double>(m_frames) / static_cast<double>(m_count), rate);
        else
            line = fmt::format("\rmh-gen: {:.1f} s of {:g} s, {} messages, {}\033[K", seconds,
                               static_cast<double>(m_duration_ns) / 1e9, m_frames, rate);
        write_stderr(line);
        m_drawn = true;
    }
    static void write_stderr(std::string_view text) {
        [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, text.data(), text.size());
    }

    wire::FrameSource& m_inner;
    uint64_t m_count;
    int64_t m_duration_ns;
    int64_t m_t0_ns;
    int64_t m_last_draw_ns = 0;
    uint64_t m_frames = 0;
    uint64_t m_next_check = k_progress_check_frames;
    bool m_drawn = false;
};

}  // namespace

GenConfig resolve(const GenOptions& options) {
    GenConfig config;
    if (options.sources < 1 || options.sources > k_max_sources)
        usage(fmt::format("--sources {}: expected 1 to {}", options.sources, k_max_sources));
    if (options.gateways < 1 || options.gateways > options.sources)
        usage(fmt::format("--gateways {}: expected 1 to the number of sources ({})", options.gateways,
                          options.sources));
    if (!std::isfinite(options.rate) || options.rate < 0 || options.rate > k_max_rate)
        usage(fmt::format("--rate {}: expected 0 (as fast as possible) up to {:g} messages per second",
                          options.rate, k_max_rate));
    if (!std::isfinite(options.anomalies) || options.anomalies < 0 || options.anomalies > 1)
        usage(fmt::format("--anomalies {}: expected a probability per message from 0 to 1", options.anomalies));
    if (options.episode < 1 || options.episode > std::numeric_limits<uint32_t>::max())
        usage(fmt::format("--episode {}: expected 1 or more reports", options.episode));

    config.fleet.sources = static_cast<uint32_t>(options.sources);
    config.gateways = static_cast<uint32_t>(options.gateways);
    config.rate = options.rate;
    config.count = options.count;
    config.label_anomalies = options.label_anomalies;
    if (!options.duration.empty()) config.duration_ns = parse_duration_option("--duration", options.duration);

    config.fleet.seed = options.seed ? *options.seed : entropy_seed();
    if (options.start.empty()) {
        // A seeded run must not depend on when it runs: byte-identical output.
        config.fleet.start_ns = options.seed ? k_seeded_start_ns : wall_clock_ns();
    } else {
        auto start = parse_time_arg(options.start);
        if (!start)
            usage(fmt::format("--start '{}': expected RFC 3339 (2026-01-01T00:00:00Z), integer nanoseconds "
                              "since the epoch, or now",
                              options.start));
        config.fleet.start_ns = *start;
    }
    if (!options.interval.empty()) {
        config.fleet.interval_ns = parse_duration_option("--interval", options.interval);
    } else if (options.rate > 0) {
        // Each source reports every sources/rate seconds: event time keeps up with the wall clock.
        const double ns = static_cast<double>(options.sources) * 1e9 / options.rate;
        config.fleet.interval_ns = std::max<int64_t>(1, std::llround(std::min(ns, 1e18)));
    } else {
        config.fleet.interval_ns = k_ns_per_second;
    }

    config.fleet.fields = select_fields(options.fields, options.field_specs);
    if (options.label_anomalies)
        for (const auto& field : config.fleet.fields)
            if (field.name == k_label_field)
                usage("a field named 'anomaly' clashes with --label-anomalies, which adds that field");
    config.fleet.anomaly_rate = options.anomalies;
    config.fleet.anomaly_kinds = parse_anomaly_kinds(options.anomaly_kinds);
    config.fleet.episode_reports = static_cast<uint32_t>(options.episode);
    return config;
}

std::string source_name(uint32_t source, uint32_t sources) {
    return numbered_name(k_source_prefix, uint64_t{source} + 1, std::max(k_min_source_digits, digits(sources)));
}

std::string gateway_name(uint32_t gateway, uint32_t gateways) {
    return numbered_name(k_gateway_prefix, uint64_t{gateway} + 1, std::max(k_min_gateway_digits, digits(gateways)));
}

uint32_t gateway_of(uint32_t source, uint32_t sources, uint32_t gateways) {
    return static_cast<uint32_t>(uint64_t{source} * gateways / sources);
}

GenSource::GenSource(const GenConfig& config, const StopFlag* stop)
    : m_config(config),
      m_stop(stop),
      m_fleet(config.fleet),
      m_ids(SplitMix64(config.fleet.seed ^ k_id_seed_salt).next()) {
    const uint32_t sources = config.fleet.sources;
    m_source_chars = source_name(0, sources).size();
    m_gateway_chars = gateway_name(0, config.gateways).size();
    for (uint32_t s = 0; s < sources; ++s) {
        m_source_names += source_name(s, sources);
        m_gateway_of.push_back(gateway_of(s, sources, config.gateways));
    }
    for (uint32_t g = 0; g < config.gateways; ++g) m_gateway_names += gateway_name(g, config.gateways);

    for (size_t l = 0; l < k_label_count; ++l) {
        const Label label = static_cast<Label>(l);
        if (label != Label::none && !config.label_anomalies) continue;
        m_templates[l] = std::make_unique<MessageTemplate>(config.fleet.fields, k_kind, m_source_chars,
                                                           m_gateway_chars, label_text(label));
    }

    m_slot_limit = std::numeric_limits<uint64_t>::max();
    m_min_batch = 1;
    if (config.rate > 0) {
        if (config.duration_ns > 0) {
            // Slots due strictly before the deadline: slot k is due at k / rate.
            const double slots = std::ceil(static_cast<double>(config.duration_ns) * config.rate / 1e9);
            m_slot_limit = static_cast<uint64_t>(std::max(1.0, slots));
        }
        const double per_tick = config.rate * static_cast<double>(k_pacing_tick_ns) / 1e9;
        m_min_batch = static_cast<uint64_t>(std::clamp(per_tick, 1.0, static_cast<double>(k_batch_slots)));
    }
}

int64_t GenSource::due_ns(uint64_t slot) const {
    return m_t0_ns + static_cast<int64_t>(std::ceil(static_cast<double>(slot) * 1e9 / m_config.rate));
}

GenSource::Refill GenSource::refill(wire::Wait wait) {
    if (m_stop && m_stop->load(std::memory_order_relaxed)) return Refill::end;
    int64_t now = monotonic_ns();  // once per batch, never per message
    if (!m_started) {
        m_started = true;
        m_t0_ns = now;
    }
    const uint64_t slot = m_fleet.slot();
    if (m_config.rate <= 0) {
        if (m_config.duration_ns > 0 && now - m_t0_ns >= m_config.duration_ns) return Refill::end;
        m_allowed_slots = slot + k_batch_slots;
        return Refill::ready;
    }
    for (;;) {
        if (slot >= m_slot_limit) return Refill::end;
        if (m_config.duration_ns > 0 && now - m_t0_ns >= m_config.duration_ns) return Refill::end;
        // Slots due by now. The estimate is corrected against due_ns() so that waking at a
        // slot's due time always finds it due (no busy loop on rounding).
        const double estimate = std::floor(static_cast<double>(now - m_t0_ns) * m_config.rate / 1e9) + 1;
        uint64_t due = static_cast<uint64_t>(std::min(estimate, static_cast<double>(m_slot_limit)));
        while (due < m_slot_limit && due_ns(due) <= now) ++due;
        while (due > 0 && due_ns(due - 1) > now) --due;
        if (due > slot) {
            m_allowed_slots = std::min(due, slot + k_batch_slots);
            return Refill::ready;
        }
        if (wait == wire::Wait::no) return Refill::idle;
        // Let a small batch come due rather than waking for every message.
        const uint64_t target = std::min(slot + m_min_batch, m_slot_limit) - 1;
        sleep_until_ns(std::min(due_ns(target), now + k_max_sleep_ns));
        if (m_stop && m_stop->load(std::memory_order_relaxed)) return Refill::end;
        now = monotonic_ns();
    }
}

wire::Next GenSource::next(wire::Wait wait, wire::Frame& frame) {
    Reading reading;
    for (;;) {
        if (m_config.count && m_messages >= m_config.count) return wire::Next::end;
        if (m_fleet.slot() >= m_allowed_slots) {
            switch (refill(wait)) {
            case Refill::ready: break;
            case Refill::idle: return wire::Next::idle;
            case Refill::end: return wire::Next::end;
            }
        }
        if (!m_fleet.step(reading)) continue;  // a silent source: its slot passes without a message
        const MessageId id = m_ids.next(reading.time_ns);
        const uint32_t gateway = m_gateway_of[reading.source];
        const size_t layout = m_config.label_anomalies ? static_cast<size_t>(reading.label) : 0;
        frame = m_templates[layout]->fill(
            id, reading.time_ns, m_source_names.data() + size_t{reading.source} * m_source_chars,
            m_gateway_names.data() + size_t{gateway} * m_gateway_chars, reading.values);
        ++m_messages;
        return wire::Next::frame;
    }
}

int run(const GenOptions& options, cli::ToolContext& context) {
    const GenConfig config = resolve(options);
    Log& log = context.log();
    log.debug("seed {}, start {}, interval {} ns, sources {}, gateways {}, fields {}", config.fleet.seed,
              format_rfc3339(config.fleet.start_ns), config.fleet.interval_ns, config.fleet.sources,
              config.gateways, config.fleet.fields.size());

    std::vector<std::string> outputs = context.options().out;
    if (outputs.empty() && options.connect.empty()) outputs.push_back("-");
    std::vector<std::unique_ptr<wire::FrameSink>> sinks;
    std::vector<wire::FrameSink*> sink_pointers;
    endpoint::GatewaysSink* gateways = nullptr;
    if (!options.connect.empty()) {
        endpoint::GatewayLinks links{options.connect, options.ca_file, options.cert_file, options.key_file, {}};
        links.answer_commands = options.answer_commands;
        links.log = &log;
        if (!options.tokens_file.empty()) links.tokens = endpoint::read_token_file(options.tokens_file);
        for (const auto& pair : options.tokens) {
            size_t eq = pair.find('=');
            if (eq == std::string::npos || eq == 0)
                throw Error(ExitCode::usage, fmt::format("--token '{}': expected GATEWAY=TOKEN", pair));
            links.tokens[pair.substr(0, eq)] = pair.substr(eq + 1);
        }
        auto sink = std::make_unique<endpoint::GatewaysSink>(links);
        gateways = sink.get();
        sink_pointers.push_back(sink.get());
        sinks.push_back(std::move(sink));
    }
    for (const auto& spec : outputs) {
        sinks.push_back(context.open_frame_sink(spec));
        sink_pointers.push_back(sinks.back().get());
    }

    GenSource generator(config, &context.stop());
    const bool terminal = ::isatty(STDERR_FILENO) == 1;
    const bool finite = config.count > 0 || config.duration_ns > 0;
    std::optional<ProgressSource> progress;
    if (terminal && finite) progress.emplace(generator, config.count, config.duration_ns);
    wire::FrameSource& source = progress ? static_cast<wire::FrameSource&>(*progress) : generator;

    relay::FlowCounters counters(context.metrics());
    relay::PumpOptions pump_options;
    pump_options.check = relay::Check::framing_only;  // our own frames need no second look
    pump_options.limits = context.limits();

    const int64_t t0 = monotonic_ns();
    relay::pump(source, sink_pointers, counters, pump_options, log);
    const double seconds = static_cast<double>(monotonic_ns() - t0) / 1e9;
    progress.reset();  // clears the progress line before the summary
    if (gateways) {
        endpoint::Ack ack = gateways->finish();
        const double acked_seconds = static_cast<double>(monotonic_ns() - t0) / 1e9;
        // Replies to commands travel the same connections; the count is of the generated messages.
        const uint64_t handled = ack.handled - std::min(ack.handled, gateways->answered());
        log.info("the endpoint acknowledged {} messages in {:.2f} s ({}), refused {}{}", handled, acked_seconds,
                 format_rate(acked_seconds > 0 ? static_cast<double>(handled) / acked_seconds : 0), ack.refused,
                 options.answer_commands ? fmt::format(", and {} replies to commands", gateways->answered()) : "");
        if (ack.refused) return static_cast<int>(ExitCode::data);
    }

    if (terminal || log.enabled(LogLevel::debug)) {
        const uint64_t messages = generator.messages();
        log.info("{} messages in {:.2f} s ({}), {} bytes per frame", messages, seconds,
                 format_rate(seconds > 0 ? static_cast<double>(messages) / seconds : 0), generator.frame_bytes());
    }
    return 0;
}

}  // namespace mh::gen
