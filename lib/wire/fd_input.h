// Large buffered reads from a file descriptor into a word-aligned buffer, shared by
// the frame and line readers. Never sets O_NONBLOCK (stdin may be shared): it asks
// poll() whether a read would block instead.
#pragma once

#include "core/stop.h"
#include "wire/stream.h"

#include <capnp/common.h>

#include <cstddef>
#include <memory>
#include <span>

namespace mh::wire {

constexpr size_t k_read_buffer_bytes = 1 << 20;  // 1 MiB per read(2)
constexpr size_t k_read_padding_bytes = 64;      // readable slack after the data (simdjson)

class FdInput {
public:
    FdInput(int fd, const StopFlag* stop, size_t buffer_bytes = k_read_buffer_bytes);

    std::span<const std::byte> data() const { return {m_buffer_bytes() + m_begin, m_end - m_begin}; }
    void consume(size_t bytes) { m_begin += bytes; }
    size_t offset() const { return m_consumed_before + m_begin; }  // stream offset of data()
    bool stopped() const { return m_stopped; }  // ended by a stop request, not by EOF

    enum class Fill { more, idle, eof };
    // Reads more after what data() holds, making room for at least `want` bytes in all.
    // Returns eof at end of input or once a stop was requested.
    Fill fill(Wait wait, size_t want);

    // Mutable view for readers that edit lines in place (none yet need it for frames).
    std::byte* mutable_data() { return m_buffer_bytes() + m_begin; }

private:
    std::byte* m_buffer_bytes() const { return reinterpret_cast<std::byte*>(m_buffer.get()); }
    void make_room(size_t want);

    int m_fd;
    const StopFlag* m_stop;
    std::unique_ptr<capnp::word[]> m_buffer;  // words, so frames at the start are aligned
    size_t m_capacity;                        // usable bytes, excluding the padding
    size_t m_begin = 0;
    size_t m_end = 0;
    size_t m_consumed_before = 0;
    bool m_eof = false;
    bool m_stopped = false;
};

// Frames from a file descriptor (stdin, a file, a pipe).
class FdFrameReader final : public FrameSource {
public:
    FdFrameReader(int fd, const StopFlag* stop, FrameLimits limits = {});
    Next next(Wait wait, Frame& frame) override;
    std::string error() const override { return m_error; }

private:
    FdInput m_input;
    FrameLimits m_limits;
    std::string m_error;
    size_t m_pending_consume = 0;
};

}  // namespace mh::wire
