// Progress of a long export on stderr (DESIGN: long finite work shows progress when stderr
// is a terminal): messages so far, of how many when that is known, the rate and the time
// elapsed. On a terminal one line is redrawn in place; forced on elsewhere (--progress) a
// line is written every interval, so a log keeps them. A final line always ends it.
#pragma once

#include "wire/stream.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace mh::store {

constexpr auto k_progress_interval = std::chrono::milliseconds(250);
constexpr uint64_t k_progress_check_every = 256;  // messages between clock reads

enum class ProgressMode { automatic, on, off };  // automatic: when stderr is a terminal

class Progress {
public:
    // `what` names the work in each line ("query"); `fd` is where lines go (stderr).
    Progress(std::string what, ProgressMode mode, int fd, std::optional<uint64_t> total = std::nullopt);
    bool enabled() const { return m_enabled; }

    void add(uint64_t messages = 1) {
        m_count += messages;
        if (m_enabled && (m_count - m_checked) >= k_progress_check_every) check();
    }
    // The final line (once); also called by the destructor.
    void finish();
    ~Progress() { finish(); }

    std::string line() const;  // what the next report says

private:
    void check();
    void write(const std::string& text);

    std::string m_what;
    bool m_enabled;
    bool m_terminal;
    int m_fd;
    std::optional<uint64_t> m_total;
    uint64_t m_count = 0, m_checked = 0;
    std::chrono::steady_clock::time_point m_started, m_last;
    bool m_finished = false;
};

// Counts what passes through to `next` into a Progress.
class ProgressSink final : public wire::FrameSink {
public:
    ProgressSink(wire::FrameSink& next, Progress& progress) : m_next(next), m_progress(progress) {}
    void write(const wire::Frame& frame) override {
        m_next.write(frame);
        m_progress.add();
    }
    void flush() override { m_next.flush(); }

private:
    wire::FrameSink& m_next;
    Progress& m_progress;
};

}  // namespace mh::store
