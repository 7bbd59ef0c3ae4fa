// The two interfaces every tool's data path is made of: where frames come from and
// where they go. Pipes, ZeroMQ sockets, JSON and CSV all sit behind them.
#pragma once

#include "wire/frame.h"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace mh::wire {

enum class Wait { no, yes };

enum class Next {
    frame,   // `frame` holds the next frame, valid until the next call
    idle,    // nothing ready now (only with Wait::no): a good moment to flush outputs
    end,     // input finished, or a stop was requested and what was read is used up
    broken,  // the input stream itself is broken; error() says how. Nothing follows.
};

class FrameSource {
public:
    virtual ~FrameSource() = default;
    virtual Next next(Wait wait, Frame& frame) = 0;
    virtual std::string error() const { return {}; }
    // Frames the source itself rejected and skipped (bad JSON lines, garbled batches).
    virtual uint64_t rejected() const { return 0; }
    // For a source that makes its frames (a decoder): whether next_into() writes them
    // straight into the caller's buffer, sparing the copy next() and a write would make.
    virtual bool makes_frames_in_place() const { return false; }
    // As next(), but a frame is appended to `out` (whole words, so frames stay aligned)
    // instead of being handed out; nothing is appended unless Next::frame is returned.
    virtual Next next_into(Wait wait, std::vector<std::byte>& out) {
        Frame frame;
        Next next = this->next(wait, frame);
        if (next == Next::frame) {
            auto bytes = frame.bytes();
            out.insert(out.end(), bytes.begin(), bytes.end());
        }
        return next;
    }
};

class FrameSink {
public:
    virtual ~FrameSink() = default;
    virtual void write(const Frame& frame) = 0;
    // Sends everything buffered; called when the input is idle and at the end.
    virtual void flush() = 0;
    // A sink that buffers frames as they are may let a writer append one in place, sparing
    // a copy: the buffer to append whole frames to, then commit() after each; nullptr if
    // the sink has none (then write()).
    virtual std::vector<std::byte>* frame_buffer() { return nullptr; }
    virtual void commit() {}
    // check_frame() and write() in one: writes the frame when it passes, else returns the
    // check's reason and writes nothing. A sink that reads the frame's words anyway
    // (JsonSink) can judge it in the same pass rather than read it twice.
    virtual std::optional<std::string> check_and_write(const Frame& frame, const FrameLimits& limits) {
        if (auto reason = check_frame(frame, limits)) return reason;
        write(frame);
        return std::nullopt;
    }
};

}  // namespace mh::wire
