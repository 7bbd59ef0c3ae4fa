#include "store/store_tool.h"

#include "csv/csv_codec.h"
#include "json/json_codec.h"
#include "message/time.h"
#include "store/append.h"
#include "store/plot.h"
#include "store/progress.h"
#include "store/store.h"
#include "text/text_sink.h"
#include "wire/fd_output.h"

#include <fmt/format.h>

#include <chrono>
#include <thread>
#include <unistd.h>

#include <charconv>

namespace mh::store {

std::optional<int64_t> parse_query_time(std::string_view text, int64_t now_ns) {
    if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
        auto duration = parse_duration_ns(text.substr(1));
        if (!duration) return std::nullopt;
        return text[0] == '-' ? now_ns - *duration : now_ns + *duration;
    }
    if (text == "now") return now_ns;
    return parse_time_arg(text);
}

std::optional<uint64_t> parse_size(std::string_view text) {
    uint64_t number = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (error != std::errc() || end == text.data()) return std::nullopt;
    std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
    unsigned shift = 0;
    if (suffix == "K" || suffix == "KiB") shift = 10;
    else if (suffix == "M" || suffix == "MiB") shift = 20;
    else if (suffix == "G" || suffix == "GiB") shift = 30;
    else if (suffix == "T" || suffix == "TiB") shift = 40;
    else if (!suffix.empty()) return std::nullopt;
    if (shift && number > (UINT64_MAX >> shift)) return std::nullopt;
    return number << shift;
}

namespace {

[[noreturn]] void usage(const std::string& message) { throw Error(ExitCode::usage, message); }

// The limits of a retention, from the options that give them (either may be empty).
Retention parse_retention(const std::string& age, const char* age_option, const std::string& size,
                          const char* size_option) {
    Retention retention;
    if (!age.empty()) {
        auto ns = parse_duration_ns(age);
        if (!ns) usage(fmt::format("{} '{}': expected a duration such as 30d or 12h", age_option, age));
        retention.max_age_ns = *ns;
    }
    if (!size.empty()) {
        auto bytes = parse_size(size);
        if (!bytes) usage(fmt::format("{} '{}': expected bytes, optionally with K, M, G or T", size_option, size));
        retention.max_bytes = *bytes;
    }
    return retention;
}

// Every output gets every frame (as --out does for every tool).
class TeeSink final : public wire::FrameSink {
public:
    explicit TeeSink(std::vector<std::unique_ptr<wire::FrameSink>> sinks) : m_sinks(std::move(sinks)) {}
    void write(const wire::Frame& frame) override {
        for (auto& sink : m_sinks) sink->write(frame);
    }
    void flush() override {
        for (auto& sink : m_sinks) sink->flush();
    }

private:
    std::vector<std::unique_ptr<wire::FrameSink>> m_sinks;
};

std::unique_ptr<wire::FrameSink> open_sink(const QueryCommand& command, const std::string& spec,
                                           cli::ToolContext& context) {
    auto time_format = command.time_format == "rfc3339" ? TimeFormat::rfc3339 : TimeFormat::nanoseconds;
    if (command.format == "json")
        return std::make_unique<JsonSink>(context.open_output_fd(spec), time_format, context.limits());
    if (command.format == "csv")
        return std::make_unique<CsvSink>(context.open_output_fd(spec), command.columns, time_format,
                                         context.limits());
    if (command.format == "text") return std::make_unique<TextSink>(context.open_output_fd(spec), context.limits());
    return context.open_frame_sink(spec);
}

ProgressMode progress_mode(bool on, bool off) {
    if (on && off) usage("--progress and --no-progress: give one of them");
    return on ? ProgressMode::on : off ? ProgressMode::off : ProgressMode::automatic;
}

std::string time_text(const std::optional<int64_t>& time_ns) {
    return time_ns ? format_rfc3339(*time_ns) : std::string("-");
}

}  // namespace

int run_append(const AppendCommand& command, cli::ToolContext& context) {
    StoreConfig config;
    config.access = Access::read_write;
    config.create = Create::yes;
    config.sync = command.sync == "none" ? Sync::none : Sync::commit;
    if (!command.max_size.empty()) {
        auto max = parse_size(command.max_size);
        if (!max || *max < k_min_map_bytes)
            usage(fmt::format("--max-size '{}': expected bytes, at least {}, optionally with K, M, G or T",
                              command.max_size, k_min_map_bytes));
        config.max_map_bytes = *max;
    }
    AppendOptions options;
    options.batch_messages = command.batch;
    auto linger = parse_duration_ns(command.linger);
    if (!linger) usage(fmt::format("--linger '{}': expected a duration such as 5ms", command.linger));
    options.linger_ns = *linger;
    options.limits = context.limits();
    options.retention = parse_retention(command.retain_age, "--retain-age", command.retain_size, "--retain-size");
    if (!command.wait_for_room.empty()) {
        auto wait = parse_duration_ns(command.wait_for_room);
        if (!wait) usage(fmt::format("--wait-for-room '{}': expected a duration such as 10m", command.wait_for_room));
        options.wait_for_room_ns = *wait;
    }
    options.stop = &context.stop();

    // Options first, then the input, then the store: a bad spec fails before anything is created.
    auto source = context.open_frame_source(context.options().in);
    std::unique_ptr<wire::FrameSink> confirm, dead_letter;
    if (!command.confirm.empty()) confirm = context.open_frame_sink(command.confirm);
    if (!context.options().dead_letter.empty()) dead_letter = context.open_frame_sink(context.options().dead_letter);
    options.confirm = confirm.get();
    options.dead_letter = dead_letter.get();

    Store store(command.db, config);
    AppendMetrics metrics(context.metrics());
    AppendCounts counts = append(*source, store, options, context.log(), &metrics);
    if (context.stop().load()) context.log().info("stopped after {} messages", counts.frames);
    if (counts.duplicates)
        context.log().info("skipped {} messages already stored (replayed ids)", counts.duplicates);
    context.log().debug("stored {} messages in {} commits", counts.stored, counts.commits);
    return 0;
}

int run_query(const QueryCommand& command, cli::ToolContext& context) {
    Query query;
    query.now_ns = wall_clock_ns();
    query.limits = context.limits();
    query.stop = &context.stop();
    query.limit = command.limit;
    query.source = command.source;
    if (!command.from.empty()) {
        auto from = parse_query_time(command.from, query.now_ns);
        if (!from) usage(fmt::format("--from '{}': expected RFC 3339, integer ns, now, or -DURATION", command.from));
        query.from_ns = *from;
    }
    if (!command.to.empty()) {
        auto to = parse_query_time(command.to, query.now_ns);
        if (!to) usage(fmt::format("--to '{}': expected RFC 3339, integer ns, now, or -DURATION", command.to));
        query.to_ns = *to;
    }
    expr::Symbols symbols;
    std::optional<expr::Expression> where;
    if (!command.where.empty()) {
        auto compiled = expr::Expression::compile(command.where, symbols);
        if (auto* error = std::get_if<expr::CompileError>(&compiled))
            usage(fmt::format("--where: {}", error->render(command.where)));
        where.emplace(std::move(std::get<expr::Expression>(compiled)));
        query.symbols = &symbols;
        query.where = &*where;
    }

    Store store(command.db, StoreConfig{});
    std::vector<std::string> outputs = context.options().out;
    if (outputs.empty()) outputs.push_back("-");
    std::vector<std::unique_ptr<wire::FrameSink>> sinks;
    for (const auto& spec : outputs) sinks.push_back(open_sink(command, spec, context));
    TeeSink sink(std::move(sinks));

    // How many there are is known without counting only when the query takes everything.
    std::optional<uint64_t> total;
    ProgressMode mode = progress_mode(command.progress, command.no_progress);
    if (!query.where && !query.source && command.from.empty() && command.to.empty()) {
        total = store.message_count();
        if (query.limit) total = std::min(*total, query.limit);
    }
    Progress progress("query", mode, STDERR_FILENO, total);
    ProgressSink counted(sink, progress);
    QueryResult result = store.query(query, progress.enabled() ? static_cast<wire::FrameSink&>(counted) : sink);
    sink.flush();
    progress.finish();
    context.log().debug("query read {} index entries and wrote {} messages", result.entries_read, result.matched);
    return 0;
}

namespace {

constexpr auto k_follow_poll = std::chrono::milliseconds(50);  // LMDB has no notifications: look again
constexpr uint64_t k_tail_chunk = 10'000;                     // messages per read transaction
constexpr auto k_longest_sleep = std::chrono::milliseconds(100);  // a stop is seen within this

// Sleeps until `until`, in short steps so that a stop request is seen; false when stopped.
bool sleep_until(std::chrono::steady_clock::time_point until, const StopFlag& stop) {
    while (!stop.load(std::memory_order_relaxed)) {
        auto now = std::chrono::steady_clock::now();
        if (now >= until) return true;
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, k_longest_sleep));
    }
    return false;
}

// --speed: each message waits until its event time, scaled, has passed since the first's.
class Pacer {
public:
    explicit Pacer(double speed) : m_speed(speed) {}
    bool wait_for(const wire::Frame& frame, const StopFlag& stop) {
        if (m_speed <= 0) return true;
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
        int64_t time = reader.getRoot<schema::Message>().getTime();
        if (!m_started) {
            m_started = true;
            m_first_time = time;
            m_first_wall = std::chrono::steady_clock::now();
            return true;
        }
        auto offset = std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(time - m_first_time) / m_speed));
        return offset.count() <= 0 || sleep_until(m_first_wall + offset, stop);
    }

private:
    double m_speed;
    bool m_started = false;
    int64_t m_first_time = 0;
    std::chrono::steady_clock::time_point m_first_wall;
};

// The smallest id of a given millisecond: ids are UUIDv7, their first six bytes the ms.
MessageId first_id_at(int64_t time_ns) {
    MessageId id{};
    uint64_t ms = time_ns > 0 ? static_cast<uint64_t>(time_ns / k_ns_per_ms) : 0;
    for (int i = 0; i < 6; ++i) id[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
    return id;
}

}  // namespace

int run_tail(const TailCommand& command, cli::ToolContext& context) {
    if (command.speed < 0) usage("--speed: expected a positive factor, such as 10");
    if (!command.from.empty() && command.from_start) usage("--from and --from-start: give one of them");
    std::optional<int64_t> from;
    if (!command.from.empty()) {
        from = parse_query_time(command.from, wall_clock_ns());
        if (!from) usage(fmt::format("--from '{}': expected RFC 3339, integer ns, now, or -DURATION", command.from));
    }
    QueryCommand output;
    output.format = command.format;
    output.time_format = command.time_format;
    output.columns = command.columns;
    std::vector<std::string> outputs = context.options().out;
    if (outputs.empty()) outputs.push_back("-");
    std::vector<std::unique_ptr<wire::FrameSink>> sinks;
    for (const auto& spec : outputs) sinks.push_back(open_sink(output, spec, context));
    TeeSink sink(std::move(sinks));

    Store store(command.db, StoreConfig{});
    // Where to begin: after this id (exclusive); none: from the first message.
    std::optional<MessageId> after;
    if (from) after = first_id_at(*from);
    else if (command.follow && !command.from_start) after = store.last_id();

    if (command.follow) {
        char text[k_id_text_chars];
        context.log().debug("following from {}",
                            after ? "after " + std::string(text, format_id(*after, text)) : std::string("the first message"));
    }
    std::optional<uint64_t> total;
    if (!command.follow && !from) total = store.message_count();
    Progress progress("tail", progress_mode(command.progress, command.no_progress), STDERR_FILENO, total);
    const StopFlag& stop = context.stop();
    Pacer pacer(command.speed);
    uint64_t written = 0;
    bool stopped = false;
    while (!stopped) {
        ScanResult scan = store.scan_ids(after, k_tail_chunk, [&](const wire::Frame& frame) {
            if (stopped || !pacer.wait_for(frame, stop)) {
                stopped = true;
                return;
            }
            sink.write(frame);
            ++written;
            progress.add();
        });
        if (scan.last) after = scan.last;
        sink.flush();
        if (stop.load(std::memory_order_relaxed)) break;
        if (scan.count == k_tail_chunk) continue;  // more history right away
        if (!command.follow) break;
        if (!sleep_until(std::chrono::steady_clock::now() + k_follow_poll, stop)) break;
    }
    progress.finish();
    if (stop.load()) context.log().info("stopped after {} messages", written);
    return 0;
}

int run_retain(const RetainCommand& command, cli::ToolContext& context) {
    Retention retention = parse_retention(command.max_age, "--max-age", command.max_size, "--max-size");
    retention.now_ns = wall_clock_ns();
    if (!retention.max_age_ns && !retention.max_bytes) usage("retain: give --max-age, --max-size or both");
    StoreConfig config;
    config.access = Access::read_write;
    Store store(command.db, config);
    RetainResult result = store.retain(retention);
    context.log().info("deleted {} messages ({} bytes)", result.deleted, result.bytes);
    return 0;
}

int run_stat(const StatCommand& command, cli::ToolContext& /*context*/) {
    Store store(command.db, StoreConfig{});
    Stats stats = store.stat();
    std::string out;
    if (command.json) {
        auto optional_time = [&](const char* name, const std::optional<int64_t>& time_ns) {
            out += fmt::format(",\"{}\":", name);
            if (time_ns) json::append_string(out, format_rfc3339(*time_ns));
            else out += "null";
        };
        out += fmt::format("{{\"messages\":{},\"bytes\":{}", stats.messages, stats.bytes);
        optional_time("first", stats.first_ns);
        optional_time("last", stats.last_ns);
        out += fmt::format(",\"sources\":{},\"top_sources\":[", stats.sources);
        for (size_t i = 0; i < stats.top_sources.size(); ++i) {
            if (i) out += ',';
            out += "{\"source\":";
            json::append_string(out, stats.top_sources[i].source);
            out += fmt::format(",\"messages\":{}}}", stats.top_sources[i].messages);
        }
        out += fmt::format("],\"map_bytes\":{},\"page_bytes\":{},\"used_pages\":{}}}\n", stats.map_bytes,
                           stats.page_bytes, stats.used_pages);
    } else {
        out += fmt::format("messages   {}\n", stats.messages);
        out += fmt::format("bytes      {}\n", stats.bytes);
        out += fmt::format("first      {}\n", time_text(stats.first_ns));
        out += fmt::format("last       {}\n", time_text(stats.last_ns));
        out += fmt::format("sources    {}\n", stats.sources);
        out += fmt::format("map        {} bytes, {} pages of {} bytes used ({:.1f}%)\n", stats.map_bytes,
                           stats.used_pages, stats.page_bytes,
                           100.0 * static_cast<double>(stats.used_pages * stats.page_bytes) /
                               static_cast<double>(std::max<size_t>(stats.map_bytes, 1)));
        if (!stats.top_sources.empty()) out += "top sources\n";
        for (const auto& top : stats.top_sources) out += fmt::format("  {:<24} {}\n", top.source, top.messages);
    }
    wire::FdOutput output(STDOUT_FILENO);
    output.append(out);
    output.flush();
    return 0;
}

int run_check(const CheckCommand& command, cli::ToolContext& context) {
    Store store(command.db, StoreConfig{});
    CheckReport report = store.check();
    std::string out;
    for (const auto& detail : report.details) out += detail + '\n';
    if (report.problems > report.details.size())
        out += fmt::format("... and {} more\n", report.problems - report.details.size());
    if (report.sound())
        out += fmt::format("sound: {} messages, every one decodes under its own id, indexes agree\n",
                           report.messages);
    wire::FdOutput output(STDOUT_FILENO);
    output.append(out);
    output.flush();
    if (report.sound()) return 0;
    context.log().error("'{}' has {} problems in {} messages", command.db, report.problems, report.messages);
    return static_cast<int>(ExitCode::data);
}

}  // namespace mh::store

namespace mh::store {

int run_plot(const PlotCommand& command, cli::ToolContext& context) {
    PlotSpec spec;
    spec.sources = command.sources;
    spec.fields = command.fields;
    spec.units = command.units;
    spec.width = command.width;
    spec.height = command.height;
    spec.title = command.title;
    spec.stop = &context.stop();
    int64_t now = wall_clock_ns();
    if (!command.from.empty()) {
        auto from = parse_query_time(command.from, now);
        if (!from) usage(fmt::format("--from '{}': expected RFC 3339, integer ns, now, or -DURATION", command.from));
        spec.from_ns = *from;
    }
    if (!command.to.empty()) {
        auto to = parse_query_time(command.to, now);
        if (!to) usage(fmt::format("--to '{}': expected RFC 3339, integer ns, now, or -DURATION", command.to));
        spec.to_ns = *to;
    }
    Store store(command.db, StoreConfig{});
    PlotResult result = plot(store, spec);
    for (const auto& pattern : result.unmatched) context.log().warn("--source '{}' names no stored source", pattern);
    for (const auto& series : result.series)
        if (!series.values) context.log().warn("{} has no numeric '{}' in the time range", series.source, series.field);
    context.log().debug("plot read {} index entries for {} lines of {} points at most", result.entries_read,
                        result.series.size(), 2 * result.plot_columns);
    // Drawn in memory first: a failure leaves no half-written chart behind.
    wire::FdOutput output(context.open_output_fd(command.output));
    output.append(result.svg);
    output.flush();
    return 0;
}

}  // namespace mh::store
