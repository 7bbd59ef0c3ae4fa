// Buffered writes to a file descriptor: frames or text, written in large chunks.
#pragma once

#include "wire/stream.h"

#include <string_view>
#include <vector>

namespace mh::wire {

constexpr size_t k_write_buffer_bytes = 256 << 10;  // 256 KiB per write(2)

constexpr int k_pipe_bytes = 1 << 20;  // the default unprivileged maximum (pipe-max-size)

// With the default 64 KiB pipe every large write sleeps several times waiting for the
// reader; a 1 MiB pipe lets writer and reader run side by side (measured: 3x the
// throughput of `mh-gen | cat`). Best effort: does nothing for files, sockets, or where
// the system allows less.
void enlarge_pipe(int fd);

class FdOutput {
public:
    explicit FdOutput(int fd) : m_fd(fd) {
        m_buffer.reserve(k_write_buffer_bytes * 2);
        enlarge_pipe(fd);
    }

    void append(std::span<const std::byte> bytes) {
        m_buffer.insert(m_buffer.end(), bytes.begin(), bytes.end());
        if (m_buffer.size() >= k_write_buffer_bytes) flush();
    }
    void append(std::string_view text) {
        append(std::span(reinterpret_cast<const std::byte*>(text.data()), text.size()));
    }
    // For encoders that write in place; call commit() when they are done.
    std::vector<std::byte>& buffer() { return m_buffer; }
    void commit() {
        if (m_buffer.size() >= k_write_buffer_bytes) flush();
    }
    // Writes everything buffered; throws OutputClosed on EPIPE, Error(io) otherwise.
    void flush();

private:
    int m_fd;
    std::vector<std::byte> m_buffer;
};

// Frames to a file descriptor, unchanged.
class FdFrameWriter final : public FrameSink {
public:
    explicit FdFrameWriter(int fd) : m_output(fd) {}
    void write(const Frame& frame) override { m_output.append(frame.bytes()); }
    void flush() override { m_output.flush(); }
    std::vector<std::byte>* frame_buffer() override { return &m_output.buffer(); }
    void commit() override { m_output.commit(); }

private:
    FdOutput m_output;
};

}  // namespace mh::wire
