#include "wire/line_reader.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mh::wire {
namespace {

constexpr size_t k_min_buffer_bytes = 64 << 10;  // keeps reads large when lines are short
constexpr std::string_view k_utf8_bom = "\xEF\xBB\xBF";

// The first '\n' in [from, end), or null: 16 bytes at a time, inline (a line is a few
// hundred bytes: the call and set-up of memchr cost as much as its search). The data is
// followed by k_read_padding_bytes readable bytes, so a load past `end` is readable; what
// it finds there is not taken.
inline const char* find_newline(const char* from, const char* end) {
#if defined(__SSE2__)
    const __m128i newline = _mm_set1_epi8('\n');
    for (const char* p = from; p < end; p += 16) {
        auto mask = static_cast<unsigned>(_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), newline)));
        if (mask != 0) {
            const char* found = p + __builtin_ctz(mask);
            return found < end ? found : nullptr;
        }
    }
    return nullptr;
#else
    return static_cast<const char*>(std::memchr(from, '\n', static_cast<size_t>(end - from)));
#endif
}

size_t without_cr(const char* text, size_t size) {
    return size > 0 && text[size - 1] == '\r' ? size - 1 : size;
}

}  // namespace

LineReader::LineReader(int fd, const StopFlag* stop, size_t max_line_bytes)
    // The buffer must hold one whole line and its "\r\n"; FdInput grows it to that when the
    // limit is larger than a read, so a small limit needs no megabyte buffer up front.
    : m_input(fd, stop,
              std::min(k_read_buffer_bytes, std::max(max_line_bytes + 2, k_min_buffer_bytes))),
      m_max_line_bytes(max_line_bytes) {}

Next LineReader::deliver(const char* text, size_t raw_size, size_t consume, std::string_view& line) {
    m_pending_consume = consume;
    m_scanned = 0;
    ++m_line_number;
    size_t size = without_cr(text, raw_size);
    if (size > m_max_line_bytes) {
        m_oversized = true;
        line = {};
    } else {
        line = {text, size};
        // Spreadsheets like to start CSV files with a byte order mark.
        if (m_line_number == 1 && line.starts_with(k_utf8_bom)) line.remove_prefix(k_utf8_bom.size());
    }
    return Next::frame;
}

Next LineReader::next(Wait wait, std::string_view& line) {
    m_input.consume(m_pending_consume);
    m_pending_consume = 0;
    m_oversized = false;
    for (;;) {
        auto data = m_input.data();
        const char* text = reinterpret_cast<const char*>(data.data());
        size_t held = data.size();

        if (m_skipping) {
            if (auto* newline = static_cast<const char*>(std::memchr(text, '\n', held))) {
                m_input.consume(static_cast<size_t>(newline - text) + 1);
                m_skipping = false;
                continue;
            }
            m_input.consume(held);
        } else {
            if (auto* newline = find_newline(text + m_scanned, text + held)) {
                size_t raw = static_cast<size_t>(newline - text);
                return deliver(text, raw, raw + 1, line);
            }
            m_scanned = held;
            // More than the limit plus a '\r' without a newline: over the limit whatever
            // comes next. Report it now rather than after reading all of it.
            if (held > m_max_line_bytes + 1) {
                ++m_line_number;
                m_input.consume(held);
                m_scanned = 0;
                m_skipping = true;
                m_oversized = true;
                line = {};
                return Next::frame;
            }
        }

        size_t want = m_input.data().size() + 1;
        switch (m_input.fill(wait, want)) {
            case FdInput::Fill::more:
                continue;
            case FdInput::Fill::idle:
                return Next::idle;
            case FdInput::Fill::eof: {
                data = m_input.data();
                held = data.size();
                if (held == 0 || m_skipping || m_input.stopped()) return Next::end;
                // A last line without a newline is still a line.
                return deliver(reinterpret_cast<const char*>(data.data()), held, held, line);
            }
        }
    }
}

}  // namespace mh::wire
