#include "store/progress.h"

#include <fmt/format.h>

#include <unistd.h>

namespace mh::store {

Progress::Progress(std::string what, ProgressMode mode, int fd, std::optional<uint64_t> total)
    : m_what(std::move(what)),
      m_enabled(mode == ProgressMode::on || (mode == ProgressMode::automatic && ::isatty(fd))),
      m_terminal(::isatty(fd)),
      m_fd(fd),
      m_total(total),
      m_started(std::chrono::steady_clock::now()),
      m_last(m_started) {}

std::string Progress::line() const {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_started).count();
    double rate = seconds > 0 ? static_cast<double>(m_count) / seconds : 0;
    std::string text = fmt::format("mh-store: {}: {} messages", m_what, m_count);
    if (m_total && *m_total)
        text += fmt::format(" of {} ({:.1f}%)", *m_total,
                            100.0 * static_cast<double>(m_count) / static_cast<double>(*m_total));
    if (rate >= 1e6) text += fmt::format(", {:.2f} M msgs/s", rate / 1e6);
    else text += fmt::format(", {:.1f} k msgs/s", rate / 1e3);
    text += fmt::format(", {:.1f} s elapsed", seconds);
    return text;
}

void Progress::check() {
    m_checked = m_count;
    auto now = std::chrono::steady_clock::now();
    if (now - m_last < k_progress_interval) return;
    m_last = now;
    write(m_terminal ? "\r\033[K" + line() : line() + "\n");
}

void Progress::finish() {
    if (!m_enabled || m_finished) return;
    m_finished = true;
    write(m_terminal ? "\r\033[K" + line() + "\n" : line() + "\n");
}

void Progress::write(const std::string& text) {
    // Best effort: progress is for people; a closed or full stderr must not end the export.
    for (size_t done = 0; done < text.size();) {
        ssize_t n = ::write(m_fd, text.data() + done, text.size() - done);
        if (n <= 0) return;
        done += static_cast<size_t>(n);
    }
}

}  // namespace mh::store
