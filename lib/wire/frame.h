// Frames: Cap'n Proto messages in the standard stream framing (segment table, then
// segments), back to back on pipes and inside ZeroMQ messages.
#pragma once

#include "schema/message.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mh::wire {

constexpr size_t k_default_max_frame_bytes = 4 << 20;  // 4 MiB
constexpr uint32_t k_max_segments = 64;                // a sane message has one or two
constexpr size_t k_max_nesting = 16;

struct FrameLimits {
    size_t max_frame_bytes = k_default_max_frame_bytes;
};

// One complete frame, word aligned; points into a buffer owned by whoever produced it.
struct Frame {
    const capnp::word* words = nullptr;
    size_t word_count = 0;

    std::span<const std::byte> bytes() const {
        return {reinterpret_cast<const std::byte*>(words), word_count * sizeof(capnp::word)};
    }
    size_t byte_count() const { return word_count * sizeof(capnp::word); }
};

enum class ScanStatus {
    complete,       // frame_bytes says how long the frame is
    incomplete,     // need more bytes (at least frame_bytes when known, else the table)
    too_large,      // declares more than the limit: the stream cannot be trusted further
    bad_segments,   // zero or too many segments, or a zero-sized table
};

struct FrameScan {
    ScanStatus status;
    size_t frame_bytes;  // total bytes of the frame when known (complete, too_large, incomplete)
};

// Looks at the segment table at the start of `bytes` without reading the segments.
FrameScan scan_frame(std::span<const std::byte> bytes, const FrameLimits& limits);

// A reading of one frame's bytes, with limits that bound what a hostile frame can make us do.
capnp::ReaderOptions reader_options(const FrameLimits& limits);

// Checks every pointer the schema knows (the reader is lazy otherwise), so that whatever
// this code reads of the message later is in bounds; returns the reason when the frame is
// garbled. Pointers a newer schema added are not followed: no reader here looks at them.
// These are the places where Cap'n Proto's exceptions about bad input are caught.
std::optional<std::string> check_frame(const Frame& frame, const FrameLimits& limits);
std::optional<std::string> check_message(schema::Message::Reader root);

// Appends `message` to `out` in stream framing.
void append_frame(capnp::MessageBuilder& message, std::vector<std::byte>& out);

}  // namespace mh::wire
