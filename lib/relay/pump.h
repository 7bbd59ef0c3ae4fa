// The loop at the heart of every pass-through tool: frames from one source to every
// sink (tee), garbled frames counted and set aside, outputs flushed whenever the input
// goes idle (low latency when quiet, big batches when loaded), barriers kept in order.
#pragma once

#include "core/log.h"
#include "metrics/metrics.h"
#include "wire/stream.h"

#include <span>

namespace mh::relay {

// The counters every tool that moves data exposes on --metrics.
struct FlowCounters {
    explicit FlowCounters(metrics::Registry& registry);
    metrics::Counter& messages_in;
    metrics::Counter& messages_out;
    metrics::Counter& bytes_in;
    metrics::Counter& bytes_out;
    metrics::Counter& dropped_malformed;
    metrics::Counter& dropped_limit;
    metrics::Counter& errors;
};

enum class Check { full, framing_only };

struct PumpOptions {
    uint64_t max_messages = 0;  // stop after this many (0: until the input ends)
    Check check = Check::full;  // full: every pointer of every frame is checked once here
    wire::FrameLimits limits;
    wire::FrameSink* dead_letter = nullptr;  // garbled frames go here when given
};

struct PumpResult {
    uint64_t messages = 0;
    uint64_t garbled = 0;
};

// Runs until the source ends (or max_messages). A broken input stream flushes what came
// before it and then throws Error(data) with the source's explanation.
PumpResult pump(wire::FrameSource& source, std::span<wire::FrameSink* const> sinks,
                FlowCounters& counters, const PumpOptions& options, Log& log);

}  // namespace mh::relay
