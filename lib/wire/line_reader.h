// Lines of text from a file descriptor, for the JSON-lines and CSV sources: fast (memchr
// over large buffered reads, no copy), bounded (a line over the limit is skipped up to its
// newline and reported, never buffered whole) and simdjson-friendly (every line returned
// is followed by k_read_padding_bytes readable bytes).
#pragma once

#include "core/stop.h"
#include "wire/fd_input.h"
#include "wire/stream.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mh::wire {

constexpr size_t k_default_max_line_bytes = k_default_max_frame_bytes;

class LineReader {
public:
    LineReader(int fd, const StopFlag* stop, size_t max_line_bytes = k_default_max_line_bytes);

    // Next::frame: `line` holds the next line without its "\n" (or "\r\n"), valid until the
    // next call; a final line without a newline is still a line. When oversized() is true
    // the line was longer than max_line_bytes(): `line` is empty and the rest of that line
    // is skipped. Next::idle only with Wait::no; Next::end at end of input or on a stop
    // request (a partial last line read before the stop is dropped). Never Next::broken:
    // read errors throw Error(io) as FdInput does.
    Next next(Wait wait, std::string_view& line);

    uint64_t line_number() const { return m_line_number; }  // of the line just returned, from 1
    bool oversized() const { return m_oversized; }
    size_t max_line_bytes() const { return m_max_line_bytes; }
    bool stopped() const { return m_input.stopped(); }

private:
    // Hands out the line of `raw_size` bytes at `text` (its '\r' dropped), to be consumed
    // with `consume` bytes (the newline included) at the next call.
    Next deliver(const char* text, size_t raw_size, size_t consume, std::string_view& line);
    FdInput m_input;
    size_t m_max_line_bytes;
    uint64_t m_line_number = 0;
    size_t m_pending_consume = 0;  // the line handed out last time, consumed on the next call
    size_t m_scanned = 0;          // bytes at the front of data() known to hold no '\n'
    bool m_skipping = false;       // inside an over-long line, discarding up to its newline
    bool m_oversized = false;
};

}  // namespace mh::wire
