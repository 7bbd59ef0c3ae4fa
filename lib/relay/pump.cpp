#include "relay/pump.h"

#include "core/error.h"
#include "wire/frame.h"

#include <chrono>

namespace mh::relay {

FlowCounters::FlowCounters(metrics::Registry& registry)
    : messages_in(registry.counter("mh_messages_in_total", "Messages read")),
      messages_out(registry.counter("mh_messages_out_total", "Messages written (once per message, not per output)")),
      bytes_in(registry.counter("mh_bytes_in_total", "Frame bytes read")),
      bytes_out(registry.counter("mh_bytes_out_total", "Frame bytes written (once per message)")),
      dropped_malformed(registry.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"malformed\"")),
      dropped_limit(registry.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"limit\"")),
      errors(registry.counter("mh_errors_total", "Errors")) {}

namespace {
constexpr uint64_t k_publish_every = 1024;  // frames between counter updates and linger checks
constexpr auto k_linger = std::chrono::milliseconds(1);

// A flood of bad frames must not become a flood of log lines: the first ten are logged,
// then the 100th, 1000th, ... with the count so far.
bool worth_logging(uint64_t count) {
    if (count <= 10) return true;
    while (count % 10 == 0) count /= 10;
    return count == 1;
}

// Per-message counts kept locally and published in batches: atomics cost on the hot path.
struct LocalCounts {
    uint64_t in = 0, out = 0, bytes = 0, garbled = 0;
    uint64_t source_rejected_seen = 0;

    void publish(FlowCounters& c, wire::FrameSource& source) {
        c.messages_in.add(in);
        c.messages_out.add(out);
        c.bytes_in.add(bytes);
        c.bytes_out.add(bytes);
        c.dropped_malformed.add(garbled);
        uint64_t rejected = source.rejected();
        c.dropped_malformed.add(rejected - source_rejected_seen);
        source_rejected_seen = rejected;
        in = out = bytes = garbled = 0;
    }
};
}  // namespace

PumpResult pump(wire::FrameSource& source, std::span<wire::FrameSink* const> sinks,
                FlowCounters& counters, const PumpOptions& options, Log& log) {
    auto flush_all = [&] {
        for (auto* sink : sinks) sink->flush();
        if (options.dead_letter) options.dead_letter->flush();
    };
    PumpResult result;
    LocalCounts local;
    auto last_flush = std::chrono::steady_clock::now();
    wire::Frame frame;
    // A decoder feeding one pipe or file writes each frame straight into its buffer: there
    // is nothing to check (frames we made ourselves) and nothing to copy.
    std::vector<std::byte>* in_place = nullptr;
    if (sinks.size() == 1 && options.check == Check::framing_only && source.makes_frames_in_place())
        in_place = sinks[0]->frame_buffer();
    auto next_frame = [&](wire::Wait wait) {
        if (!in_place) return source.next(wait, frame);
        size_t before = in_place->size();
        wire::Next next = source.next_into(wait, *in_place);
        if (next == wire::Next::frame) {
            frame.words = nullptr;  // counted by its size only: it is already written
            frame.word_count = (in_place->size() - before) / sizeof(capnp::word);
        }
        return next;
    };
    for (;;) {
        if (options.max_messages && result.messages >= options.max_messages) break;
        wire::Next next = next_frame(wire::Wait::no);
        if (next == wire::Next::idle) {
            flush_all();
            local.publish(counters, source);
            last_flush = std::chrono::steady_clock::now();
            next = next_frame(wire::Wait::yes);
        }
        if (next == wire::Next::end) break;
        if (next == wire::Next::broken) {
            flush_all();
            local.publish(counters, source);
            counters.errors.add();
            throw Error(ExitCode::data, source.error());
        }
        if (next != wire::Next::frame) continue;

        ++local.in;
        local.bytes += frame.byte_count();
        bool written = false;
        if (options.check == Check::full) {
            // One sink checks as it writes (written only when it passes); more are each
            // written after the check.
            auto reason = sinks.size() == 1 ? sinks[0]->check_and_write(frame, options.limits)
                                            : wire::check_frame(frame, options.limits);
            if (reason) {
                ++local.garbled;
                ++result.garbled;
                if (worth_logging(result.garbled))
                    log.warn("dropped a garbled frame of {} bytes ({} so far): {}", frame.byte_count(), result.garbled,
                             *reason);
                if (options.dead_letter) options.dead_letter->write(frame);
                continue;
            }
            written = sinks.size() == 1;
        }
        if (in_place)
            sinks[0]->commit();
        else if (!written)
            for (auto* sink : sinks) sink->write(frame);
        ++local.out;
        ++result.messages;
        if (local.in >= k_publish_every) {
            local.publish(counters, source);
            // A source that is never idle but slow to fill a batch must not hold data back.
            auto now = std::chrono::steady_clock::now();
            if (now - last_flush >= k_linger) {
                flush_all();
                last_flush = now;
            }
        }
    }
    flush_all();
    local.publish(counters, source);
    return result;
}

}  // namespace mh::relay
