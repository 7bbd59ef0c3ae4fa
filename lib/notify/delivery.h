// Delivery: a durable queue of pending notifications per sink in LMDB (--state DIR), and a
// worker thread per sink that delivers them in order, retries with exponential back-off and
// jitter within a budget, and hands what runs out of budget to the dead-letter output.
//
// LMDB tables: "incidents" (key -> Incident), "pending" (sink id, sequence -> attempts,
// next try, first try, notification frame) and "meta" (the next sequence). The engine
// writes a notification's incident and its pending rows in one transaction; a worker
// deletes a row once delivered. So a crash or restart neither repeats what was told nor
// loses what was not yet delivered.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/stop.h"
#include "json/json_codec.h"
#include "metrics/metrics.h"
#include "notify/sinks.h"
#include "store/lmdb.h"

namespace mh::notify {

// The LMDB environment and its tables. Without a directory it lives in a temporary one
// that is removed at the end: the same code path, durable only with --state.
class State {
  public:
    explicit State(const std::string& directory);
    ~State();
    State(const State&) = delete;
    State& operator=(const State&) = delete;

    store::Env& env() { return *m_env; }
    bool durable() const { return !m_temporary; }
    const std::string& path() const { return m_path; }
    MDB_dbi incidents = 0, pending = 0, meta = 0;

  private:
    std::string m_path;
    bool m_temporary = false;
    std::unique_ptr<store::Env> m_env;
};

struct RetryPolicy {
    int64_t retry_for_ns = 0;    // give up this long after the first failed attempt; 0: never
    uint32_t max_attempts = 0;   // give up after this many attempts; 0: no limit
    int64_t backoff_ns = 0;      // the first retry's delay, doubled each time
    int64_t backoff_max_ns = 0;  // the longest delay
};

// The delay before retry number `attempts` (1 = the first retry): backoff * 2^(attempts-1),
// capped, with "equal jitter" (half fixed, half random) so that many incidents failing
// together do not retry in lockstep. `random01` is in [0, 1).
int64_t backoff_delay_ns(const RetryPolicy& policy, uint32_t attempts, double random01);

// At most one log line per interval for one kind of event (a flood of dead letters, a sink
// failing for hours); the lines held back are counted and said with the next one.
class LogLimiter {
  public:
    static constexpr int64_t k_interval_ns = 10 * int64_t{1'000'000'000};
    // " (N more since)" to append when this line may be logged, nullopt when it is held back.
    std::optional<std::string> allow(int64_t now_ns);
    uint64_t held() const { return m_held; }

  private:
    int64_t m_last_ns = 0;
    uint64_t m_held = 0;
};

// The first error that ends a worker or the engine thread (a full disk, a broken state
// file): kept for the input thread to throw, which a SIGTERM to ourselves wakes from its read.
class Failure {
  public:
    void set(std::exception_ptr error);
    void rethrow_if_any();

  private:
    std::mutex m_mutex;
    std::exception_ptr m_error;
};

// The dead-letter output, shared by the input (garbled frames) and the workers.
class DeadLetter {
  public:
    DeadLetter(std::unique_ptr<wire::FrameSink> sink, wire::FrameLimits limits)
        : m_sink(std::move(sink)), m_limits(limits) {}
    bool present() const { return m_sink != nullptr; }
    void write(const wire::Frame& frame);
    // The notification with fields reason, sink and attempts added.
    void notification(const wire::Frame& frame, const std::string& sink, const std::string& reason,
                      uint32_t attempts);

  private:
    std::mutex m_mutex;
    std::unique_ptr<wire::FrameSink> m_sink;
    wire::FrameLimits m_limits;
};

struct DeliveryCounters {
    explicit DeliveryCounters(metrics::Registry& registry);
    metrics::Counter& delivered;
    metrics::Counter& failed_attempts;
    metrics::Counter& dead_letters;
};

// Pending row keys: sink id then sequence, both big-endian so a cursor walks them in order.
uint64_t sink_id(const std::string& sink_name);

// Stores a new pending row (in the engine's transaction, with the incident it belongs to).
void store_pending(store::Txn& txn, const State& state, uint64_t sink, uint64_t sequence,
                   std::span<const std::byte> frame);

class Worker {
  public:
    Worker(std::unique_ptr<Sink> sink, State& state, const RetryPolicy& policy,
           DeadLetter& dead_letter, Log& log, DeliveryCounters& counters, const StopFlag& stop,
           wire::FrameLimits limits, Failure& failure);
    ~Worker();

    Sink& sink() { return *m_sink; }
    uint64_t id() const { return m_id; }
    // Reads this sink's pending rows (left by an earlier run); returns how many.
    size_t load();
    void start();
    // A notification already stored under `sequence` (in the engine's transaction).
    void push(uint64_t sequence, std::vector<std::byte> frame);
    void push_barrier(std::vector<std::byte> frame);
    // Delivers what is queued (or, once a stop is requested, stops after the current
    // attempt), then ends the thread. Returns how many remain undelivered.
    size_t finish();
    // Notifications queued and not yet delivered or given up.
    size_t pending();

  private:
    struct Item {
        uint64_t sequence = 0;
        bool barrier = false;
        uint32_t attempts = 0;
        int64_t next_ns = 0;
        int64_t first_ns = 0;
        std::vector<std::byte> frame;
    };
    void run();
    void loop();
    void attempt(Item& item);
    void save(const Item& item);
    void remove(const Item& item);  // batched: see flush_removed()
    void flush_removed();

    std::unique_ptr<Sink> m_sink;
    std::string m_name;
    uint64_t m_id;
    State& m_state;
    RetryPolicy m_policy;
    DeadLetter& m_dead_letter;
    Log& m_log;
    DeliveryCounters& m_counters;
    const StopFlag& m_stop;
    wire::FrameLimits m_limits;
    Failure& m_failure;

    std::mutex m_mutex;
    std::condition_variable m_wake;
    std::deque<Item> m_queue;
    bool m_finishing = false;
    bool m_abandon = false;  // destroyed without finish()
    std::thread m_thread;
    uint64_t m_random;       // jitter
    bool m_failing = false;  // logged the outage; the recovery is logged once too
    LogLimiter m_gave_up_log;
    bool m_unflushed = false;  // deliver() or barrier() since the last Sink::flush()
    JsonEncoder m_encoder;
    std::string m_json;
    std::vector<uint64_t> m_removed;  // delivered rows not yet deleted (worker thread only)
};

}  // namespace mh::notify
