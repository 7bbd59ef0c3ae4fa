#include "wire/fd_input.h"

#include "core/error.h"
#include "wire/fd_output.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mh::wire {

FdInput::FdInput(int fd, const StopFlag* stop, size_t buffer_bytes)
    : m_fd(fd),
      m_stop(stop),
      m_buffer(new capnp::word[(buffer_bytes + k_read_padding_bytes) / sizeof(capnp::word)]()),
      m_capacity(buffer_bytes) {
    enlarge_pipe(fd);  // the reader's end may be the first to see the pipe
    map_file();
}

FdInput::~FdInput() { unmap(); }

namespace {
// Smaller files are read: the mapping's set-up would cost more than the copies it saves.
constexpr size_t k_min_mapped_bytes = 2 * k_read_buffer_bytes;
}  // namespace

void FdInput::map_file() {
    struct stat st {};
    if (::fstat(m_fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    // Only from the start: the mapping starts at a page, and frames must stay word aligned.
    if (::lseek(m_fd, 0, SEEK_CUR) != 0 || static_cast<size_t>(st.st_size) < k_min_mapped_bytes) return;
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t bytes = static_cast<size_t>(st.st_size);
    const size_t reserved = (bytes + page - 1) / page * page + page;  // and a guard page of zeros
    void* area = ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) return;
    // Copy-on-write, so mutable_data() may edit in place as it may in the buffer.
    if (::mmap(area, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, m_fd, 0) == MAP_FAILED) {
        ::munmap(area, reserved);
        return;
    }
    ::madvise(area, bytes, MADV_SEQUENTIAL);
    m_map = static_cast<std::byte*>(area);
    m_map_bytes = bytes;
    m_map_reserved = reserved;
}

void FdInput::unmap() {
    if (m_map) ::munmap(m_map, m_map_reserved);
    m_map = nullptr;
}

FdInput::Fill FdInput::fill_mapped(size_t want) {
    if (m_end < m_map_bytes) {
        m_end = std::min(m_map_bytes, std::max(m_end + m_capacity, m_begin + want));
        return Fill::more;
    }
    // The mapping is used up: what is held goes to the buffer, and read(2) goes on from
    // the mapping's end (the file may have grown since; otherwise it says EOF).
    size_t held = m_end - m_begin;
    if (held + k_read_padding_bytes > m_capacity) {
        m_capacity = std::max(held, m_capacity);
        m_buffer.reset(new capnp::word[(m_capacity + k_read_padding_bytes) / sizeof(capnp::word) + 1]());
    }
    std::memcpy(m_buffer_bytes(), m_map + m_begin, held);
    if (::lseek(m_fd, static_cast<off_t>(m_map_bytes), SEEK_SET) < 0)
        throw Error(ExitCode::io, errno_text("lseek(input)", errno));
    unmap();
    m_consumed_before += m_begin;
    m_begin = 0;
    m_end = held;
    return Fill::more;
}

void FdInput::make_room(size_t want) {
    size_t held = m_end - m_begin;
    if (want > m_capacity) {
        // Grow (a frame or line larger than the buffer); callers bound `want`.
        size_t capacity = std::max(want, m_capacity * 2);
        std::unique_ptr<capnp::word[]> bigger(
            new capnp::word[(capacity + k_read_padding_bytes) / sizeof(capnp::word) + 1]());
        std::memcpy(bigger.get(), m_buffer_bytes() + m_begin, held);
        m_buffer = std::move(bigger);
        m_capacity = capacity;
    } else if (m_begin > 0 && (m_capacity - m_end < m_capacity / 4 || m_capacity - m_begin < want)) {
        // Move the tail to the front: keeps frames word aligned since m_begin always
        // lands on a frame boundary, and frames are whole words.
        std::memmove(m_buffer_bytes(), m_buffer_bytes() + m_begin, held);
    } else {
        return;
    }
    m_consumed_before += m_begin;
    m_begin = 0;
    m_end = held;
}

FdInput::Fill FdInput::fill(Wait wait, size_t want) {
    if (m_eof) return Fill::eof;
    if (!m_map) make_room(want);
    for (;;) {
        if (m_stop && m_stop->load(std::memory_order_relaxed)) {
            m_eof = m_stopped = true;
            return Fill::eof;
        }
        if (m_map) return fill_mapped(want);
        if (wait == Wait::no) {
            pollfd p{m_fd, POLLIN, 0};
            int ready = ::poll(&p, 1, 0);
            if (ready == 0) return Fill::idle;
            if (ready < 0 && errno != EINTR) throw Error(ExitCode::io, errno_text("poll(input)", errno));
            if (ready < 0) continue;
        }
        ssize_t n = ::read(m_fd, m_buffer_bytes() + m_end, m_capacity - m_end);
        if (n > 0) {
            m_end += static_cast<size_t>(n);
            return Fill::more;
        }
        if (n == 0) {
            m_eof = true;
            return Fill::eof;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return Fill::idle;
        throw Error(ExitCode::io, errno_text("read(input)", errno));
    }
}

FdFrameReader::FdFrameReader(int fd, const StopFlag* stop, FrameLimits limits)
    : m_input(fd, stop), m_limits(limits) {}

Next FdFrameReader::next(Wait wait, Frame& frame) {
    m_input.consume(m_pending_consume);
    m_pending_consume = 0;
    for (;;) {
        auto bytes = m_input.data();
        FrameScan scan = scan_frame(bytes, m_limits);
        switch (scan.status) {
            case ScanStatus::complete:
                frame.words = reinterpret_cast<const capnp::word*>(bytes.data());
                frame.word_count = scan.frame_bytes / sizeof(capnp::word);
                m_pending_consume = scan.frame_bytes;
                return Next::frame;
            case ScanStatus::too_large:
                m_error = fmt::format(
                    "frame at byte {} declares {} bytes, over the limit of {} (--max-frame)",
                    m_input.offset(), scan.frame_bytes, m_limits.max_frame_bytes);
                return Next::broken;
            case ScanStatus::bad_segments:
                m_error = fmt::format(
                    "garbage at byte {}: not a Cap'n Proto segment table (is the input JSON? "
                    "try --from json)",
                    m_input.offset());
                return Next::broken;
            case ScanStatus::incomplete:
                break;
        }
        switch (m_input.fill(wait, std::max(scan.frame_bytes, sizeof(capnp::word)))) {
            case FdInput::Fill::more:
                continue;
            case FdInput::Fill::idle:
                return Next::idle;
            case FdInput::Fill::eof:
                // A frame cut short by a stop request is not a broken stream: its writer
                // is being stopped too, and nothing of it was accepted.
                if (m_input.data().empty() || m_input.stopped()) return Next::end;
                m_error = fmt::format("truncated frame at byte {}: input ended after {} of {} bytes",
                                      m_input.offset(), m_input.data().size(),
                                      scan.frame_bytes ? scan.frame_bytes : sizeof(capnp::word));
                return Next::broken;
        }
    }
}

}  // namespace mh::wire
