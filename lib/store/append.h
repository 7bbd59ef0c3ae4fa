// The append loop of mh-store: frames from a source into the store with group commit.
// A batch is committed when it is full, when the input goes idle, when its first frame
// has waited --linger, before a checkpoint barrier is confirmed, and at the end.
#pragma once

#include "core/log.h"
#include "metrics/metrics.h"
#include "relay/pump.h"
#include "store/store.h"
#include "wire/stream.h"

#include <cstdint>

namespace mh::store {

constexpr size_t k_default_batch_messages = 65536;  // a cap: --linger and idle input usually commit first
constexpr int64_t k_default_linger_ns = 5'000'000;            // 5 ms
constexpr size_t k_max_batch_bytes = size_t{64} << 20;        // a batch of large frames commits early
constexpr uint64_t k_linger_check_every = 64;                 // frames between clock reads
constexpr int64_t k_retain_interval_ns = 10'000'000'000;      // how often append applies --retain-age/--retain-size
constexpr int64_t k_full_retry_ns = 1'000'000'000;             // how often a full store is tried again

struct AppendOptions {
    size_t batch_messages = k_default_batch_messages;
    int64_t linger_ns = k_default_linger_ns;
    wire::FrameLimits limits;
    wire::FrameSink* confirm = nullptr;      // barriers go here once everything before them is committed
    wire::FrameSink* dead_letter = nullptr;  // garbled and refused frames go here when given
    // Applied at the first commit, after a commit every k_retain_interval_ns, and at the
    // end, when either limit is set (now_ns is read from the wall clock each time).
    Retention retention;
    // When the store is full (disk or --max-size): 0 ends the append at once (exit 74);
    // otherwise the batch is held, no more input is read (back-pressure upstream), and the
    // commit is tried again every k_full_retry_ns until it succeeds or this much time passed.
    int64_t wait_for_room_ns = 0;
    const StopFlag* stop = nullptr;  // a stop while waiting for room ends the wait
};

struct AppendCounts {
    uint64_t frames = 0;      // everything read, barriers included
    uint64_t stored = 0;
    uint64_t duplicates = 0;  // ids already stored: replays are harmless
    uint64_t garbled = 0;
    uint64_t no_id = 0;
    uint64_t bad_source = 0;
    uint64_t barriers = 0;
    uint64_t commits = 0;
    uint64_t retained_away = 0;  // old messages deleted by the retention
};

// What --metrics shows for an append, beside the flow counters every tool has.
struct AppendMetrics {
    explicit AppendMetrics(metrics::Registry& registry);
    relay::FlowCounters flow;
    metrics::Counter& duplicates;
    metrics::Counter& no_id;
    metrics::Counter& bad_source;
    metrics::Counter& barriers;
    metrics::Counter& commits;
    metrics::Histogram& commit_seconds;
};

// Runs until the source ends (or a stop makes it end), committing as it goes. A broken
// input stream commits what came before the break, then throws Error(data). A store that
// cannot be written (full disk, full map) throws Error(io) with everything committed before kept.
AppendCounts append(wire::FrameSource& source, Store& store, const AppendOptions& options, Log& log,
                    AppendMetrics* metrics = nullptr);

}  // namespace mh::store
