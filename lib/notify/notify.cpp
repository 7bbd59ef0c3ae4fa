#include "notify/notify.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "expr/expr.h"
#include "message/time.h"
#include "notify/delivery.h"
#include "notify/incident.h"
#include "notify/notification.h"
#include "notify/sinks.h"
#include "notify/template.h"
#include "relay/pump.h"

namespace mh::notify {
namespace {

constexpr size_t k_max_batch = 8192;  // input items per engine transaction (group commit)
constexpr auto k_idle_wait = std::chrono::seconds(1);
constexpr uint64_t k_publish_every = 1024;
constexpr std::string_view k_sequence_key = "sequence";

// What the input thread hands to the engine.
struct Item {
    enum class Kind : uint8_t { match, clear, barrier } kind;
    std::string key;
    std::vector<std::optional<std::string>> parts;  // for clear: the key, missing parts as nullopt
    std::vector<std::byte> frame;
};

// Bounded: a slow engine (a slow disk) holds up the input after `capacity` items, no sooner.
class InputQueue {
  public:
    explicit InputQueue(size_t capacity) : m_capacity(std::max<size_t>(capacity, 1)) {}

    void push(Item item) {
        std::unique_lock lock(m_mutex);
        m_not_full.wait(lock, [&] { return m_items.size() < m_capacity || m_closed; });
        if (m_closed) return;  // the engine failed: the input thread is about to stop
        m_items.push_back(std::move(item));
        m_not_empty.notify_one();
    }
    void close() {
        std::lock_guard lock(m_mutex);
        m_closed = true;
        m_not_full.notify_all();
    }
    void end() {
        std::lock_guard lock(m_mutex);
        m_ended = true;
        m_not_empty.notify_one();
    }
    // Waits for items, the end, or `deadline_ns` (wall clock); returns true once ended and empty.
    bool take(std::vector<Item>& out, std::optional<int64_t> deadline_ns) {
        std::unique_lock lock(m_mutex);
        if (m_items.empty() && !m_ended) {
            auto wait = std::chrono::nanoseconds(k_idle_wait);
            if (deadline_ns)
                wait = std::min(wait, std::chrono::nanoseconds(
                                          std::max<int64_t>(*deadline_ns - wall_clock_ns(), 0)));
            m_not_empty.wait_for(lock, wait);
        }
        while (!m_items.empty() && out.size() < k_max_batch) {
            out.push_back(std::move(m_items.front()));
            m_items.pop_front();
        }
        m_not_full.notify_all();
        return m_ended && m_items.empty();
    }

  private:
    size_t m_capacity;
    std::mutex m_mutex;
    std::condition_variable m_not_empty, m_not_full;
    std::deque<Item> m_items;
    bool m_ended = false;
    bool m_closed = false;
};

struct NotifyCounters {
    explicit NotifyCounters(metrics::Registry& registry)
        : malformed(registry.counter("mh_dropped_total", "Messages dropped, by reason",
                                     "reason=\"malformed\"")),
          flow(registry),
          matched(registry.counter("mh_notify_matched_total", "Messages for which --when held")),
          opened(registry.counter("mh_notifications_total", "Notifications made, by state",
                                  "state=\"open\"")),
          repeated(registry.counter("mh_notifications_total", "Notifications made, by state",
                                    "state=\"repeat\"")),
          resolved(registry.counter("mh_notifications_total", "Notifications made, by state",
                                    "state=\"resolved\"")),
          delivery(registry) {}
    metrics::Counter& malformed;
    relay::FlowCounters flow;
    metrics::Counter& matched;
    metrics::Counter& opened;
    metrics::Counter& repeated;
    metrics::Counter& resolved;
    DeliveryCounters delivery;
};

class Engine {
  public:
    Engine(State& state, IncidentBook& book, std::vector<std::unique_ptr<Worker>>& workers,
           const Template& text, wire::FrameLimits limits, NotifyCounters& counters, Log& log,
           DeadLetter& dead_letter, size_t max_pending)
        : m_state(state),
          m_book(book),
          m_workers(workers),
          m_builder(text, limits),
          m_limits(limits),
          m_counters(counters),
          m_log(log),
          m_dead_letter(dead_letter),
          m_max_pending(max_pending) {}

    // Reads the saved incidents and the sequence; returns how many incidents are open.
    size_t restore() {
        store::Txn txn(m_state.env(), store::Txn::Kind::read);
        if (auto value = txn.get(m_state.meta, store::as_bytes(k_sequence_key));
            value && value->size() == 8)
            std::memcpy(&m_sequence, value->data(), 8);
        store::Cursor cursor(txn, m_state.incidents);
        MDB_val key{}, value{};
        size_t count = 0;
        for (bool more = cursor.move(MDB_FIRST, key, value); more;
             more = cursor.move(MDB_NEXT, key, value)) {
            auto incident = Incident::deserialize(store::to_bytes(value));
            auto words =
                incident ? aligned_words(incident->last_frame) : std::vector<capnp::word>{};
            if (!incident || wire::check_frame(wire::Frame{words.data(), words.size()}, m_limits)) {
                m_log.warn("an incident in {} cannot be read; skipped", m_state.path());
                continue;
            }
            m_book.restore(std::string(static_cast<const char*>(key.mv_data), key.mv_size),
                           std::move(*incident));
            ++count;
        }
        return count;
    }

    void run(InputQueue& queue, Failure& failure) {
        try {
            std::vector<Item> batch;
            for (;;) {
                batch.clear();
                bool ended = queue.take(batch, m_book.next_deadline());
                step(batch);
                if (ended) return;
            }
        } catch (...) {
            queue.close();
            failure.set(std::current_exception());
        }
    }

  private:
    struct Outgoing {
        Worker* worker;  // nullptr: a barrier for every worker that wants barriers
        uint64_t sequence;
        std::vector<std::byte> frame;
    };

    void step(std::vector<Item>& batch) {
        int64_t now = wall_clock_ns();
        auto deadline = m_book.next_deadline();
        if (batch.empty() && (!deadline || *deadline > now)) return;  // woken for nothing
        store::Txn txn(m_state.env(), store::Txn::Kind::write);
        m_out.clear();
        m_added.assign(m_workers.size(), 0);
        for (auto& item : batch) {
            std::optional<Told> told;
            switch (item.kind) {
                case Item::Kind::barrier:
                    m_out.push_back({nullptr, 0, std::move(item.frame)});
                    continue;
                case Item::Kind::match:
                    told = m_book.match(item.key, now, item.frame);
                    break;
                case Item::Kind::clear:
                    for (const auto& one : m_book.clear(item.parts, now)) emit(txn, one, now);
                    break;
            }
            if (told) emit(txn, *told, now);
        }
        m_told.clear();
        m_book.tick(now, m_told);
        for (const auto& told : m_told) emit(txn, told, now);

        auto dirty = m_book.take_dirty();
        if (dirty.empty() && m_out.empty()) return;  // nothing to commit
        for (const auto& key : dirty) {
            auto it = m_book.incidents().find(key);
            if (it == m_book.incidents().end())
                txn.del(m_state.incidents, store::as_bytes(key));
            else
                txn.put(m_state.incidents, store::as_bytes(key), it->second.serialize());
        }
        txn.put(m_state.meta, store::as_bytes(k_sequence_key),
                std::as_bytes(std::span<const uint64_t>(&m_sequence, 1)));
        // Durable before anyone hears of it: a crash after this repeats nothing, and a
        // crash before it loses nothing that the upstream replay will not bring again.
        txn.commit();
        for (auto& out : m_out) {
            if (out.worker) {
                out.worker->push(out.sequence, std::move(out.frame));
            } else {
                for (auto& worker : m_workers)
                    if (worker->sink().wants_barriers()) worker->push_barrier(out.frame);
            }
        }
    }

    void emit(store::Txn& txn, const Told& told, int64_t now) {
        std::vector<std::byte> frame;
        m_builder.build(told, now, frame);
        switch (told.event) {
            case Event::open:
                m_counters.opened.add();
                break;
            case Event::repeat:
                m_counters.repeated.add();
                break;
            case Event::resolved:
                m_counters.resolved.add();
                break;
        }
        m_log.debug("incident {}: {}", display_key(told.key), event_name(told.event));
        m_added.resize(m_workers.size());
        for (size_t i = 0; i < m_workers.size(); ++i) {
            auto& worker = m_workers[i];
            if (!worker->sink().wants(told.event)) continue;
            if (worker->pending() + m_added[i] >= m_max_pending) {
                // A sink that has been down for long must not take all memory and disk.
                std::string reason = fmt::format(
                    "{} notifications already wait for this sink (--max-pending)", m_max_pending);
                if (auto more = m_full_log.allow(now))
                    m_log.error("{}: gave up on notification {} at once: {}{}",
                                worker->sink().name(), display_key(told.key), reason, *more);
                auto words = aligned_words(frame);
                m_dead_letter.notification(wire::Frame{words.data(), words.size()},
                                           worker->sink().name(), reason, 0);
                m_counters.delivery.dead_letters.add();
                continue;
            }
            uint64_t sequence = m_sequence++;
            store_pending(txn, m_state, worker->id(), sequence, frame);
            ++m_added[i];
            m_out.push_back({worker.get(), sequence, frame});
        }
    }

    State& m_state;
    IncidentBook& m_book;
    std::vector<std::unique_ptr<Worker>>& m_workers;
    NotificationBuilder m_builder;
    wire::FrameLimits m_limits;
    NotifyCounters& m_counters;
    Log& m_log;
    DeadLetter& m_dead_letter;
    size_t m_max_pending;
    uint64_t m_sequence = 0;
    std::vector<Outgoing> m_out;
    std::vector<Told> m_told;
    LogLimiter m_full_log;
    std::vector<size_t> m_added;  // per worker, in this step: not yet in its queue
};

int64_t duration_option(const std::string& option, const std::string& text, int64_t fallback,
                        bool zero_ok = true) {
    if (text.empty()) return fallback;
    auto ns = parse_duration_ns(text);
    if (!ns || *ns < 0 || (!zero_ok && *ns == 0))
        throw Error(
            ExitCode::usage,
            fmt::format("{} '{}': expected a duration such as 250ms, 30s, 5m or 1h", option, text));
    return *ns;
}

expr::Expression compile(const std::string& option, const std::string& text,
                         expr::Symbols& symbols) {
    auto compiled = expr::Expression::compile(text, symbols);
    if (auto* expression = std::get_if<expr::Expression>(&compiled)) return std::move(*expression);
    throw Error(ExitCode::usage, fmt::format("bad expression in {}: {}", option,
                                             std::get<expr::CompileError>(compiled).render(text)));
}

std::string read_secret(const NotifyOptions& options) {
    if (options.secret_file.empty()) return options.secret;
    std::ifstream file(options.secret_file);
    if (!file)
        throw Error(ExitCode::config,
                    fmt::format("--secret-file {}: cannot read it", options.secret_file));
    std::stringstream text;
    text << file.rdbuf();
    std::string secret = text.str();
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (secret.empty())
        throw Error(ExitCode::config,
                    fmt::format("--secret-file {} is empty", options.secret_file));
    return secret;
}

// Worker and engine threads leave SIGTERM/SIGINT to the input thread, whose blocking read
// they interrupt; children of --exec get a clean mask from posix_spawn.
class BlockStopSignals {
  public:
    BlockStopSignals() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, &m_old);
    }
    ~BlockStopSignals() { pthread_sigmask(SIG_SETMASK, &m_old, nullptr); }

  private:
    sigset_t m_old;
};

std::string make_key(schema::Message::Reader message, const std::vector<std::string>& names) {
    std::string key;
    for (size_t i = 0; i < names.size(); ++i) {
        if (i) key += k_key_separator;
        key += format_value(message_value(message, names[i]), "");
    }
    return key;
}

// Pending rows of sinks that are not configured in this run.
size_t count_orphans(State& state, const std::set<uint64_t>& sink_ids) {
    store::Txn txn(state.env(), store::Txn::Kind::read);
    store::Cursor cursor(txn, state.pending);
    MDB_val key{}, value{};
    size_t orphans = 0;
    for (bool more = cursor.move(MDB_FIRST, key, value); more;
         more = cursor.move(MDB_NEXT, key, value)) {
        auto bytes = store::to_bytes(key);
        if (bytes.size() < 8) continue;
        uint64_t id = 0;
        for (int i = 0; i < 8; ++i) id = id << 8 | static_cast<uint8_t>(bytes[i]);
        if (!sink_ids.count(id)) ++orphans;
    }
    return orphans;
}

std::vector<std::optional<std::string>> key_parts(schema::Message::Reader message,
                                                  const std::vector<std::string>& names) {
    std::vector<std::optional<std::string>> parts;
    for (const auto& name : names) {
        TemplateValue value = message_value(message, name);
        if (value.type == TemplateValue::Type::missing)
            parts.emplace_back();
        else
            parts.emplace_back(format_value(value, ""));
    }
    return parts;
}

}  // namespace

int run(const NotifyOptions& options, cli::ToolContext& context) {
    Log& log = context.log();
    const wire::FrameLimits limits = context.limits();
    // Everything that can be wrong with the options is said before anything is opened.
    expr::Symbols symbols;
    expr::Expression when = compile("--when", options.when, symbols);
    std::optional<expr::Expression> resolve_when;
    if (!options.resolve_when.empty())
        resolve_when.emplace(compile("--resolve-when", options.resolve_when, symbols));
    Template text(options.text);
    std::vector<std::string> key_names;
    for (const auto& name : options.key)
        if (!name.empty()) key_names.push_back(name);
    if (key_names.empty())
        throw Error(ExitCode::usage, "--key: at least one name (a header or a field)");

    IncidentConfig config;
    config.every_ns = duration_option("--every", options.every, 0);
    config.resolve_after_ns =
        duration_option("--resolve-after", options.resolve_after,
                        resolve_when ? 0 : *parse_duration_ns(k_default_resolve_after));
    config.flap_ns = duration_option("--flap", options.flap, 0);
    int64_t timeout_ns = duration_option("--timeout", options.timeout, 0, false);
    RetryPolicy policy;
    policy.retry_for_ns = duration_option("--retry-for", options.retry_for, 0);
    policy.max_attempts = options.retry_max;
    policy.backoff_ns = duration_option("--backoff", options.backoff, 0, false);
    policy.backoff_max_ns = std::max(
        duration_option("--backoff-max", options.backoff_max, 0, false), policy.backoff_ns);

    const auto& outs = context.options().out;
    if (options.webhooks.empty() && options.execs.empty() && options.smtp.empty() &&
        options.commands.empty() && outs.empty())
        throw Error(ExitCode::usage,
                    "no sink: give at least one of --webhook URL, --exec CMD, --smtp HOST:PORT, "
                    "--command ENDPOINT "
                    "or --out SPEC");
    if (!options.smtp.empty() && options.mail_to.empty())
        throw Error(ExitCode::usage, "--smtp needs --mail-to ADDRESS (repeatable)");
    if (options.smtp.empty() && (!options.mail_to.empty() || options.starttls))
        throw Error(ExitCode::usage, "--mail-to and --starttls go with --smtp HOST:PORT");
    for (const auto& header : options.headers)
        if (header.find(':') == std::string::npos ||
            header.find_first_of("\r\n") != std::string::npos)
            throw Error(ExitCode::usage,
                        fmt::format("--header '{}': expected 'Name: value' on one line", header));
    for (const auto& url : options.webhooks)
        if (!url.starts_with("http://") && !url.starts_with("https://"))
            throw Error(ExitCode::usage,
                        fmt::format("--webhook '{}': expected an http:// or https:// URL", url));
    std::string secret = read_secret(options);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    Failure failure;
    NotifyCounters counters(context.metrics());
    State state(options.state);
    IncidentBook book(config);
    DeadLetter dead_letter(context.options().dead_letter.empty()
                               ? nullptr
                               : context.open_frame_sink(context.options().dead_letter),
                           limits);

    std::vector<std::unique_ptr<Sink>> sinks;
    for (const auto& url : options.webhooks)
        sinks.push_back(make_webhook(
            {url, options.headers, secret, timeout_ns, options.cacert, &context.stop()}));
    for (const auto& command : options.execs)
        sinks.push_back(make_exec(command, timeout_ns, &context.stop()));
    for (const auto& server : options.smtp)
        sinks.push_back(make_smtp({server, options.mail_to, options.mail_from, options.starttls,
                                   timeout_ns, options.cacert, &context.stop()}));
    for (const auto& spec : options.commands)
        sinks.push_back(
            make_command(context.zmq(), spec, options.command_name, timeout_ns, limits));
    for (const auto& spec : outs) sinks.push_back(make_out(spec, context.open_frame_sink(spec)));

    std::vector<std::unique_ptr<Worker>> workers;
    std::set<uint64_t> sink_ids;
    for (auto& sink : sinks) {
        // Two equal sinks would share one queue in --state and deliver everything twice.
        if (!sink_ids.insert(sink_id(sink->name())).second)
            throw Error(ExitCode::usage, fmt::format("{} is given twice", sink->name()));
        workers.push_back(std::make_unique<Worker>(std::move(sink), state, policy, dead_letter, log,
                                                   counters.delivery, context.stop(), limits,
                                                   failure));
        if (size_t pending = workers.back()->load())
            log.info("{}: {} notifications pending from an earlier run",
                     workers.back()->sink().name(), pending);
    }
    if (size_t orphans = count_orphans(state, sink_ids))
        log.warn(
            "{} notifications in {} are pending for sinks not given now; they stay until those "
            "sinks are "
            "given again",
            orphans, state.path());
    Engine engine(state, book, workers, text, limits, counters, log, dead_letter,
                  options.max_pending);
    if (size_t open = engine.restore()) log.info("{} incidents open from an earlier run", open);

    auto source = context.open_frame_source(context.options().in);
    InputQueue queue(options.queue);
    std::thread engine_thread;
    {
        BlockStopSignals blocked;
        for (auto& worker : workers) worker->start();
        engine_thread = std::thread([&] { engine.run(queue, failure); });
    }
    struct JoinEngine {  // the engine ends once told the input did, also when the input throws
        InputQueue& queue;
        std::thread& thread;
        ~JoinEngine() {
            queue.end();
            if (thread.joinable()) thread.join();
        }
    } join_engine{queue, engine_thread};

    expr::Record record(symbols);
    expr::Scratch scratch;
    uint64_t in = 0, bytes = 0, matched = 0, garbled = 0;
    auto publish = [&] {
        counters.flow.messages_in.add(in);
        counters.flow.bytes_in.add(bytes);
        counters.matched.add(matched);
        counters.malformed.add(garbled);
        in = bytes = matched = garbled = 0;
    };
    int64_t now_ns = wall_clock_ns();
    wire::Frame frame;
    for (;;) {
        wire::Next next = source->next(wire::Wait::no, frame);
        if (next == wire::Next::idle) {
            publish();
            next = source->next(wire::Wait::yes, frame);
            now_ns = wall_clock_ns();
        }
        if (next == wire::Next::end) break;
        if (next == wire::Next::broken) {
            publish();
            counters.flow.errors.add();
            throw Error(ExitCode::data, source->error());
        }
        if (next != wire::Next::frame) continue;
        ++in;
        bytes += frame.byte_count();
        if (in % k_publish_every == 0) {
            publish();
            now_ns = wall_clock_ns();
        }
        if (auto reason = wire::check_frame(frame, limits)) {
            ++garbled;
            log.warn("dropped a garbled frame of {} bytes: {}", frame.byte_count(), *reason);
            dead_letter.write(frame);
            continue;
        }
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                             wire::reader_options(limits));
        auto message = reader.getRoot<schema::Message>();
        auto bytes_of = [&] {
            return std::vector<std::byte>(frame.bytes().begin(), frame.bytes().end());
        };
        if (message.getControl().isBarrier()) {
            queue.push({Item::Kind::barrier, {}, {}, bytes_of()});
            continue;
        }
        record.bind(message, now_ns);
        scratch.reset();
        if (when.holds(record, scratch)) {
            ++matched;
            queue.push({Item::Kind::match, make_key(message, key_names), {}, bytes_of()});
            continue;
        }
        if (resolve_when) {
            scratch.reset();
            if (resolve_when->holds(record, scratch))
                queue.push({Item::Kind::clear, {}, key_parts(message, key_names), {}});
        }
    }
    publish();
    queue.end();
    engine_thread.join();

    // Deliver what is queued before exiting (within each sink's retry budget); a stop
    // request cuts that short, and what is left stays in --state for the next start.
    size_t left = 0;
    for (auto& worker : workers) left += worker->finish();
    failure.rethrow_if_any();  // a full disk or a broken state file ends the tool with its error
    if (left > 0) {
        if (state.durable())
            log.warn(
                "{} notifications not yet delivered stay in {}; they are delivered at the next "
                "start",
                left, state.path());
        else
            log.error(
                "{} notifications not yet delivered are lost: give --state DIR to keep them across "
                "restarts",
                left);
    }
    if (context.stop().load())
        log.info("stopped after {} messages", counters.flow.messages_in.value());
    return 0;
}

}  // namespace mh::notify
