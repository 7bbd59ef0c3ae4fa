#include "store/append.h"

#include "core/error.h"
#include "message/time.h"

#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <thread>

namespace mh::store {

AppendMetrics::AppendMetrics(metrics::Registry& registry)
    : flow(registry),
      duplicates(registry.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"duplicate\"")),
      no_id(registry.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"no_id\"")),
      bad_source(registry.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"bad_source\"")),
      barriers(registry.counter("mh_store_barriers_total", "Checkpoint barriers confirmed after a commit")),
      commits(registry.counter("mh_store_commits_total", "LMDB write transactions committed")),
      commit_seconds(registry.histogram("mh_store_commit_seconds", "Time to write and commit one batch")) {}

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto k_idle_poll = std::chrono::microseconds(200);       // looking again for input while a batch gathers
constexpr auto k_max_group_time = std::chrono::milliseconds(250);  // the longest a batch gathers after a slow commit

// Counts since the last publication, so that metrics cost one atomic add per commit.
struct Unpublished {
    uint64_t frames = 0, bytes = 0, stored = 0, stored_bytes = 0, garbled = 0, duplicates = 0, no_id = 0,
             bad_source = 0, barriers = 0;
};

class Appender {
public:
    Appender(wire::FrameSource& source, Store& store, const AppendOptions& options, Log& log, AppendMetrics* metrics)
        : m_source(source), m_store(store), m_options(options), m_log(log), m_metrics(metrics) {}

    AppendCounts run() {
        wire::Frame frame;
        for (;;) {
            wire::Next next = m_source.next(wire::Wait::no, frame);
            if (next == wire::Next::idle && hold_for_more()) {
                std::this_thread::sleep_for(k_idle_poll);
                continue;
            }
            if (next == wire::Next::idle) {
                commit();
                next = m_source.next(wire::Wait::yes, frame);
            }
            if (next == wire::Next::end) break;
            if (next == wire::Next::broken) {
                commit();
                finish();
                if (m_metrics) m_metrics->flow.errors.add();
                throw Error(ExitCode::data, m_source.error());
            }
            if (next != wire::Next::frame) continue;
            take(frame);
        }
        commit();
        apply_retention(Force::yes);  // a finite run ends within its limits
        finish();
        return m_counts;
    }

private:
    // Group commit that grows with the cost of a commit: while a commit takes longer than
    // --linger (an fsync on a slow disk, a batch touching many pages), a message waits
    // that long for its commit anyway, so a batch may take as long to gather. Batches
    // then grow until gathering one takes about as long as committing it, and the cost
    // of each sync is shared by more messages. Barriers still commit at once.
    std::chrono::nanoseconds linger() const {
        return std::max(std::chrono::nanoseconds(m_options.linger_ns), m_commit_time);
    }
    // Input went idle: commit now, unless commits are slow and this batch is younger than one.
    bool hold_for_more() const {
        return !m_batch.empty() && m_commit_time > std::chrono::nanoseconds(m_options.linger_ns) &&
               Clock::now() - m_batch_started < m_commit_time;
    }

    void take(const wire::Frame& frame) {
        ++m_counts.frames;
        ++m_unpublished.frames;
        m_unpublished.bytes += frame.byte_count();
        auto result = m_batch.add(frame, m_options.limits);
        if (auto* barrier = std::get_if<BarrierSeen>(&result)) {
            confirm(frame, barrier->number);
        } else if (auto* refused = std::get_if<Refused>(&result)) {
            refuse(frame, *refused);
        } else {
            if (m_batch.size() == 1) m_batch_started = Clock::now();
            if (m_batch.size() >= m_options.batch_messages || m_batch.bytes() >= k_max_batch_bytes) {
                commit();
            } else if (m_batch.size() % k_linger_check_every == 0 &&
                       Clock::now() - m_batch_started >= linger()) {
                commit();  // a source that is never idle but slow to fill a batch
            }
        }
    }

    // A barrier is confirmed only once everything before it is durable; it is not stored.
    void confirm(const wire::Frame& frame, uint64_t number) {
        commit();
        ++m_counts.barriers;
        ++m_unpublished.barriers;
        if (m_options.confirm) {
            m_options.confirm->write(frame);
            m_options.confirm->flush();
        }
        m_log.debug("barrier {} committed", number);
    }

    void refuse(const wire::Frame& frame, const Refused& refused) {
        switch (refused.reason) {
            case Refusal::garbled:
                ++m_counts.garbled;
                ++m_unpublished.garbled;
                m_log.warn("dropped a garbled frame of {} bytes: {}", frame.byte_count(), refused.text);
                break;
            case Refusal::no_id:
                if (m_counts.no_id++ == 0)
                    m_log.warn("refused a message: {}; the store deduplicates by id, and ids are assigned at "
                               "ingestion (mh-endpoint, mh-gen): further ones are only counted",
                               refused.text);
                ++m_unpublished.no_id;
                break;
            case Refusal::bad_source:
                if (m_counts.bad_source++ == 0)
                    m_log.warn("refused a message: {}; further ones are only counted", refused.text);
                ++m_unpublished.bad_source;
                break;
        }
        if (m_options.dead_letter) m_options.dead_letter->write(frame);
    }

    void commit() {
        if (!m_batch.empty()) {
            auto started = Clock::now();
            CommitResult result = commit_or_wait();
            auto elapsed = Clock::now() - started;
            m_commit_time = std::min<std::chrono::nanoseconds>(elapsed, k_max_group_time);
            if (result.map_growths)
                m_log.info("the store's map grew to {} MiB", m_store.map_bytes() >> 20);
            ++m_counts.commits;
            m_counts.stored += result.stored;
            m_counts.duplicates += result.duplicates;
            m_unpublished.stored += result.stored;
            m_unpublished.stored_bytes += result.bytes;
            m_unpublished.duplicates += result.duplicates;
            if (m_metrics) {
                m_metrics->commits.add();
                m_metrics->commit_seconds.observe_ns(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
            }
            m_batch.clear();
        }
        if (m_options.dead_letter) m_options.dead_letter->flush();
        apply_retention();
        publish();
    }

    // Commits the batch. A full store either ends the append or, with wait_for_room_ns,
    // holds the batch and the input (the writer upstream blocks) and tries again.
    CommitResult commit_or_wait() {
        auto stopped = [&] { return m_options.stop && m_options.stop->load(std::memory_order_relaxed); };
        auto give_up = [&](const Error& e) {
            return Error(e.code(), fmt::format("stopped appending to '{}': {}; everything committed before is "
                                               "kept, the {} messages of the batch in progress were not stored",
                                               m_store.directory(), e.what(), m_batch.size()));
        };
        std::optional<Clock::time_point> waiting_since;
        for (;;) {
            try {
                CommitResult result = m_store.commit(m_batch);
                if (waiting_since)
                    m_log.info("there is room again: committed the held batch after {:.1f} s",
                               std::chrono::duration<double>(Clock::now() - *waiting_since).count());
                return result;
            } catch (const StoreFull& e) {
                auto now = Clock::now();
                if (!waiting_since) {
                    waiting_since = now;
                    if (m_options.wait_for_room_ns > 0)
                        m_log.error("{}; holding the input and trying again every {} s for up to {} s", e.what(),
                                    k_full_retry_ns / 1'000'000'000, m_options.wait_for_room_ns / 1'000'000'000);
                }
                if (now - *waiting_since >= std::chrono::nanoseconds(m_options.wait_for_room_ns) || stopped())
                    throw give_up(e);
                auto until = now + std::chrono::nanoseconds(k_full_retry_ns);
                while (Clock::now() < until && !stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
            } catch (const Error& e) {
                throw give_up(e);
            }
        }
    }

    enum class Force { no, yes };
    void apply_retention(Force force = Force::no) {
        const Retention& r = m_options.retention;
        if (!r.max_age_ns && !r.max_bytes) return;
        auto now = Clock::now();
        if (force == Force::no && m_retained_once &&
            now - m_last_retain < std::chrono::nanoseconds(k_retain_interval_ns))
            return;
        m_retained_once = true;
        m_last_retain = now;
        Retention due = r;
        due.now_ns = wall_clock_ns();
        RetainResult result = m_store.retain(due);
        m_counts.retained_away += result.deleted;
        if (result.deleted) m_log.debug("retention deleted {} old messages ({} bytes)", result.deleted, result.bytes);
    }

    void publish() {
        if (!m_metrics) return;
        auto& u = m_unpublished;
        m_metrics->flow.messages_in.add(u.frames);
        m_metrics->flow.bytes_in.add(u.bytes);
        m_metrics->flow.messages_out.add(u.stored);
        m_metrics->flow.bytes_out.add(u.stored_bytes);
        m_metrics->flow.dropped_malformed.add(u.garbled);
        m_metrics->duplicates.add(u.duplicates);
        m_metrics->no_id.add(u.no_id);
        m_metrics->bad_source.add(u.bad_source);
        m_metrics->barriers.add(u.barriers);
        u = {};
    }

    void finish() {
        if (m_counts.no_id > 1 || m_counts.bad_source > 1)
            m_log.warn("refused {} messages without an id and {} with a source the index cannot take",
                       m_counts.no_id, m_counts.bad_source);
    }

    wire::FrameSource& m_source;
    Store& m_store;
    const AppendOptions& m_options;
    Log& m_log;
    AppendMetrics* m_metrics;
    Batch m_batch;
    Clock::time_point m_batch_started;
    std::chrono::nanoseconds m_commit_time{0};  // of the last commit, bounded
    Clock::time_point m_last_retain;
    bool m_retained_once = false;
    AppendCounts m_counts;
    Unpublished m_unpublished;
};

}  // namespace

AppendCounts append(wire::FrameSource& source, Store& store, const AppendOptions& options, Log& log,
                    AppendMetrics* metrics) {
    return Appender(source, store, options, log, metrics).run();
}

}  // namespace mh::store
