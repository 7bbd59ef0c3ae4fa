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
    ~FdInput();
    FdInput(const FdInput&) = delete;
    FdInput& operator=(const FdInput&) = delete;

    std::span<const std::byte> data() const { return {base() + m_begin, m_end - m_begin}; }
    void consume(size_t bytes) { m_begin += bytes; }
    size_t offset() const { return m_consumed_before + m_begin; }  // stream offset of data()
    bool stopped() const { return m_stopped; }  // ended by a stop request, not by EOF

    enum class Fill { more, idle, eof };
    // Reads more after what data() holds, making room for at least `want` bytes in all.
    // Returns eof at end of input or once a stop was requested.
    Fill fill(Wait wait, size_t want);

    // Mutable view for readers that edit lines in place (none yet need it for frames).
    std::byte* mutable_data() { return base() + m_begin; }

    // Whether the input is a regular file read through a memory mapping (see fill()).
    bool mapped() const { return m_map != nullptr; }

private:
    std::byte* m_buffer_bytes() const { return reinterpret_cast<std::byte*>(m_buffer.get()); }
    std::byte* base() const { return m_map ? m_map : m_buffer_bytes(); }
    void make_room(size_t want);
    void map_file();
    void unmap();
    Fill fill_mapped(size_t want);

    int m_fd;
    const StopFlag* m_stop;
    std::unique_ptr<capnp::word[]> m_buffer;  // words, so frames at the start are aligned
    size_t m_capacity;                        // usable bytes, excluding the padding
    size_t m_begin = 0;
    size_t m_end = 0;
    size_t m_consumed_before = 0;
    bool m_eof = false;
    bool m_stopped = false;
    // A regular file read from its start is mapped rather than copied by read(2): data()
    // points into the mapping, which a zeroed guard page follows (the padding after the
    // last byte). fill() still hands it out k_read_buffer_bytes at a time, so a stop
    // request is seen as often as with reads; at the mapping's end the rest is copied to
    // the buffer and reading goes on with read(2) (a file that grew, or EOF).
    std::byte* m_map = nullptr;
    size_t m_map_bytes = 0;      // of the file, mapped
    size_t m_map_reserved = 0;   // mapped bytes and the guard
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
