#include "notify/delivery.h"

#include <capnp/serialize.h>
#include <fmt/format.h>
#include <kj/exception.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "filter/hash.h"
#include "message/time.h"
#include "notify/notification.h"

namespace mh::notify {
namespace {

constexpr size_t k_map_bytes = size_t{1} << 30;  // sparse: the file grows only as used
constexpr size_t k_row_header_bytes = 4 + 8 + 8;
constexpr auto k_stop_check = std::chrono::milliseconds(100);  // how soon a worker sees a stop
// Delivered rows are deleted together, once the queue has nothing due or this many piled up:
// one commit (one fsync) for a burst, not one per notification. A crash in between repeats
// those deliveries (at least once), with the same ids.
constexpr size_t k_remove_batch = 4096;

std::array<std::byte, 16> row_key(uint64_t sink, uint64_t sequence) {
    std::array<std::byte, 16> key;
    for (int i = 0; i < 8; ++i) {
        key[i] = static_cast<std::byte>(sink >> (56 - 8 * i));
        key[8 + i] = static_cast<std::byte>(sequence >> (56 - 8 * i));
    }
    return key;
}

uint64_t load_be(const std::byte* p) {
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value = value << 8 | static_cast<uint8_t>(p[i]);
    return value;
}

void put_le(std::vector<std::byte>& out, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
}
uint64_t get_le(const std::byte* p, int bytes) {
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; --i) value = value << 8 | static_cast<uint8_t>(p[i]);
    return value;
}

}  // namespace

State::State(const std::string& directory) {
    if (directory.empty()) {
        const char* tmp = std::getenv("TMPDIR");
        std::string pattern = fmt::format("{}/mh-notify.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(pattern.data())) throw Error(ExitCode::io, errno_text("mkdtemp", errno));
        m_path = pattern;
        m_temporary = true;
    } else {
        m_path = directory;
        if (::mkdir(m_path.c_str(), 0755) != 0 && errno != EEXIST)
            throw Error(ExitCode::io,
                        fmt::format("--state {}: cannot create the state directory: {}", m_path,
                                    std::strerror(errno)));
    }
    store::EnvConfig config;
    config.access = store::Access::read_write;
    config.map_bytes = k_map_bytes;
    config.max_tables = 4;
    m_env = std::make_unique<store::Env>(m_path, config);
    store::Txn txn(*m_env, store::Txn::Kind::write);
    incidents = *store::open_table(txn, "incidents", MDB_CREATE);
    pending = *store::open_table(txn, "pending", MDB_CREATE);
    meta = *store::open_table(txn, "meta", MDB_CREATE);
    txn.commit();
}

State::~State() {
    m_env.reset();
    if (m_temporary) {
        std::error_code ignored;
        std::filesystem::remove_all(m_path, ignored);
    }
}

std::optional<std::string> LogLimiter::allow(int64_t now_ns) {
    if (m_last_ns != 0 && now_ns - m_last_ns < k_interval_ns) {
        ++m_held;
        return std::nullopt;
    }
    m_last_ns = now_ns;
    std::string suffix =
        m_held ? fmt::format(" ({} more like it since the last report)", m_held) : "";
    m_held = 0;
    return suffix;
}

void Failure::set(std::exception_ptr error) {
    {
        std::lock_guard lock(m_mutex);
        if (m_error) return;
        m_error = error;
    }
    ::kill(::getpid(), SIGTERM);  // the input thread stops reading, as on a stop request
}

void Failure::rethrow_if_any() {
    std::lock_guard lock(m_mutex);
    if (m_error) std::rethrow_exception(m_error);
}

int64_t backoff_delay_ns(const RetryPolicy& policy, uint32_t attempts, double random01) {
    double delay = static_cast<double>(policy.backoff_ns) *
                   std::ldexp(1.0, static_cast<int>(std::min(attempts, 40u)) - 1);
    delay = std::min(delay, static_cast<double>(policy.backoff_max_ns));
    return static_cast<int64_t>(delay / 2 + delay / 2 * random01);
}

void DeadLetter::write(const wire::Frame& frame) {
    if (!m_sink) return;
    std::lock_guard lock(m_mutex);
    m_sink->write(frame);
    m_sink->flush();
}

void DeadLetter::notification(const wire::Frame& frame, const std::string& sink,
                              const std::string& reason, uint32_t attempts) {
    if (!m_sink) return;
    std::vector<std::byte> bytes;
    append_with_fields(frame,
                       {{"reason", reason}, {"sink", sink}, {"attempts", std::to_string(attempts)}},
                       m_limits, bytes);
    auto words = aligned_words(bytes);
    write(wire::Frame{words.data(), words.size()});
}

DeliveryCounters::DeliveryCounters(metrics::Registry& registry)
    : delivered(
          registry.counter("mh_notify_delivered_total", "Notifications delivered, over all sinks")),
      failed_attempts(
          registry.counter("mh_notify_failed_attempts_total", "Delivery attempts that failed")),
      dead_letters(
          registry.counter("mh_notify_dead_letters_total",
                           "Notifications given up after the retry budget, or refused for good")) {}

uint64_t sink_id(const std::string& sink_name) { return filter::hash_text(sink_name); }

Worker::Worker(std::unique_ptr<Sink> sink, State& state, const RetryPolicy& policy,
               DeadLetter& dead_letter, Log& log, DeliveryCounters& counters, const StopFlag& stop,
               wire::FrameLimits limits, Failure& failure)
    : m_sink(std::move(sink)),
      m_name(m_sink->name()),
      m_id(sink_id(m_name)),
      m_state(state),
      m_policy(policy),
      m_dead_letter(dead_letter),
      m_log(log),
      m_counters(counters),
      m_stop(stop),
      m_limits(limits),
      m_failure(failure),
      m_random(filter::mix64(static_cast<uint64_t>(wall_clock_ns()) ^ m_id)) {}

Worker::~Worker() {
    if (m_thread.joinable()) {
        {
            std::lock_guard lock(m_mutex);
            m_abandon = true;
        }
        m_wake.notify_all();
        m_thread.join();
    }
}

size_t Worker::load() {
    store::Txn txn(m_state.env(), store::Txn::Kind::read);
    store::Cursor cursor(txn, m_state.pending);
    auto start = row_key(m_id, 0);
    MDB_val key = store::to_val(start), value{};
    size_t loaded = 0;
    for (bool more = cursor.move(MDB_SET_RANGE, key, value); more;
         more = cursor.move(MDB_NEXT, key, value)) {
        auto k = store::to_bytes(key);
        auto v = store::to_bytes(value);
        if (k.size() != 16 || load_be(k.data()) != m_id) break;
        if (v.size() < k_row_header_bytes) continue;
        auto words = aligned_words(v.subspan(k_row_header_bytes));
        if (auto reason = wire::check_frame(wire::Frame{words.data(), words.size()}, m_limits)) {
            m_log.warn("{}: a pending notification in {} cannot be read ({}); skipped", m_name,
                       m_state.path(), *reason);
            continue;
        }
        Item item;
        item.sequence = load_be(k.data() + 8);
        item.attempts = static_cast<uint32_t>(get_le(v.data(), 4));
        item.next_ns = static_cast<int64_t>(get_le(v.data() + 4, 8));
        item.first_ns = static_cast<int64_t>(get_le(v.data() + 12, 8));
        item.frame.assign(v.begin() + k_row_header_bytes, v.end());
        m_queue.push_back(std::move(item));
        ++loaded;
    }
    return loaded;
}

void Worker::start() {
    m_thread = std::thread([this] { run(); });
}

void Worker::push(uint64_t sequence, std::vector<std::byte> frame) {
    {
        std::lock_guard lock(m_mutex);
        Item item;
        item.sequence = sequence;
        item.frame = std::move(frame);
        m_queue.push_back(std::move(item));
    }
    m_wake.notify_one();
}

void Worker::push_barrier(std::vector<std::byte> frame) {
    {
        std::lock_guard lock(m_mutex);
        Item item;
        item.barrier = true;
        item.frame = std::move(frame);
        m_queue.push_back(std::move(item));
    }
    m_wake.notify_one();
}

size_t Worker::finish() {
    {
        std::lock_guard lock(m_mutex);
        m_finishing = true;
    }
    m_wake.notify_all();
    if (m_thread.joinable()) m_thread.join();
    std::lock_guard lock(m_mutex);
    size_t left = 0;
    for (const auto& item : m_queue) left += item.barrier ? 0 : 1;
    return left;
}

size_t Worker::pending() {
    std::lock_guard lock(m_mutex);
    return m_queue.size();  // barriers too: they are few
}

void Worker::run() {
    try {
        loop();
    } catch (...) {
        m_failure.set(std::current_exception());
    }
}

void Worker::loop() {
    std::unique_lock lock(m_mutex);
    for (;;) {
        bool idle = m_queue.empty() || m_queue.front().next_ns > wall_clock_ns();
        bool leaving =
            m_abandon || m_stop.load(std::memory_order_relaxed) || (m_queue.empty() && m_finishing);
        if ((m_unflushed || !m_removed.empty()) &&
            (idle || leaving || m_removed.size() >= k_remove_batch)) {
            lock.unlock();
            if (m_unflushed)
                m_sink->flush();  // before the rows go: a crash in between repeats, never loses
            m_unflushed = false;
            if (!m_removed.empty()) flush_removed();
            lock.lock();
            continue;
        }
        if (leaving) return;
        if (m_queue.empty()) {
            m_wake.wait_for(lock, k_stop_check);
            continue;
        }
        Item& head = m_queue.front();
        int64_t now = wall_clock_ns();
        if (head.next_ns > now) {  // in order: a notification waits for the one before it
            auto wait = std::min<std::chrono::nanoseconds>(
                std::chrono::nanoseconds(head.next_ns - now), k_stop_check);
            m_wake.wait_for(lock, wait);
            continue;
        }
        // The deque's front stays put while unlocked: push() only appends.
        lock.unlock();
        bool done = true;
        if (head.barrier) {
            auto words = aligned_words(head.frame);
            m_sink->barrier(wire::Frame{words.data(), words.size()});
            m_unflushed = true;
        } else {
            attempt(head);
            done = head.next_ns == 0;
        }
        lock.lock();
        if (done) m_queue.pop_front();
    }
}

// Delivers `item`; on return next_ns == 0 means it is finished with (delivered or given
// up), otherwise it says when to try again.
void Worker::attempt(Item& item) {
    auto words = aligned_words(item.frame);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()),
                                         wire::reader_options(m_limits));
    auto message = reader.getRoot<schema::Message>();
    m_json.clear();
    if (m_sink->needs_json()) {
        m_encoder.encode(message, m_json);
        if (!m_json.empty() && m_json.back() == '\n') m_json.pop_back();
    }
    wire::Frame frame{words.data(), words.size()};

    Outcome outcome;
    try {
        outcome = m_sink->deliver(NotificationView{frame, message, m_json});
        m_unflushed = true;
    } catch (const OutputClosed&) {
        throw;  // the reader of --out went away: the tool ends quietly, the rest stays in the state
    } catch (const std::exception& e) {
        outcome = {Outcome::Kind::retry, e.what()};
    } catch (const kj::Exception& e) {
        outcome = {Outcome::Kind::retry, e.getDescription().cStr()};
    }
    int64_t now = wall_clock_ns();
    ++item.attempts;
    if (outcome.kind == Outcome::Kind::delivered) {
        remove(item);
        m_counters.delivered.add();
        if (m_failing)
            m_log.info("{}: delivering again (after {} attempts)", m_name, item.attempts);
        m_failing = false;
        item.next_ns = 0;
        return;
    }
    m_counters.failed_attempts.add();
    if (item.first_ns == 0) item.first_ns = now;
    bool exhausted = outcome.kind == Outcome::Kind::permanent ||
                     (m_policy.max_attempts > 0 && item.attempts >= m_policy.max_attempts) ||
                     (m_policy.retry_for_ns > 0 && now - item.first_ns >= m_policy.retry_for_ns);
    if (exhausted) {
        if (auto more = m_gave_up_log.allow(now))
            m_log.error("{}: gave up on notification {} after {} attempts: {}{}{}", m_name,
                        field_text(message, "incident"), item.attempts, outcome.reason,
                        m_dead_letter.present() ? " (sent to --dead-letter)" : "", *more);
        m_dead_letter.notification(frame, m_name, outcome.reason, item.attempts);
        m_counters.dead_letters.add();
        remove(item);
        item.next_ns = 0;
        return;
    }
    m_random = filter::mix64(m_random + 0x9e3779b97f4a7c15ULL);
    double random01 = static_cast<double>(m_random >> 11) / static_cast<double>(uint64_t{1} << 53);
    int64_t delay = backoff_delay_ns(m_policy, item.attempts, random01);
    item.next_ns = now + std::max<int64_t>(delay, 1);
    save(item);
    if (!m_failing)
        m_log.warn("{}: attempt failed: {}; retrying with back-off", m_name, outcome.reason);
    else
        m_log.debug("{}: attempt {} failed: {}; next in {} ms", m_name, item.attempts,
                    outcome.reason, delay / k_ns_per_ms);
    m_failing = true;
}

void store_pending(store::Txn& txn, const State& state, uint64_t sink, uint64_t sequence,
                   std::span<const std::byte> frame) {
    std::vector<std::byte> value;
    value.reserve(k_row_header_bytes + frame.size());
    value.resize(k_row_header_bytes);  // no attempts yet, due at once
    value.insert(value.end(), frame.begin(), frame.end());
    auto key = row_key(sink, sequence);
    txn.put(state.pending, key, value);
}

void Worker::save(const Item& item) {
    std::vector<std::byte> value;
    value.reserve(k_row_header_bytes + item.frame.size());
    put_le(value, item.attempts, 4);
    put_le(value, static_cast<uint64_t>(item.next_ns), 8);
    put_le(value, static_cast<uint64_t>(item.first_ns), 8);
    value.insert(value.end(), item.frame.begin(), item.frame.end());
    auto key = row_key(m_id, item.sequence);
    store::Txn txn(m_state.env(), store::Txn::Kind::write);
    txn.put(m_state.pending, key, value);
    txn.commit();
}

void Worker::remove(const Item& item) { m_removed.push_back(item.sequence); }

void Worker::flush_removed() {
    store::Txn txn(m_state.env(), store::Txn::Kind::write);
    for (uint64_t sequence : m_removed) {
        auto key = row_key(m_id, sequence);
        txn.del(m_state.pending, key);
    }
    txn.commit();
    m_removed.clear();
}

}  // namespace mh::notify
