// One line per event on stderr, prefixed with the tool's name; systemd-friendly:
// under journald (JOURNAL_STREAM set) each line carries its <priority> prefix.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>

namespace mh {

enum class LogLevel { error = 3, warn = 4, info = 6, debug = 7 };

std::optional<LogLevel> parse_log_level(std::string_view text);

class Log {
public:
    explicit Log(std::string tool, LogLevel level = LogLevel::info);

    bool enabled(LogLevel level) const { return level <= m_level; }
    void set_level(LogLevel level) { m_level = level; }
    const std::string& tool() const { return m_tool; }

    template <typename... Args>
    void error(fmt::format_string<Args...> f, Args&&... args) {
        write(LogLevel::error, fmt::format(f, std::forward<Args>(args)...));
    }
    template <typename... Args>
    void warn(fmt::format_string<Args...> f, Args&&... args) {
        if (enabled(LogLevel::warn)) write(LogLevel::warn, fmt::format(f, std::forward<Args>(args)...));
    }
    template <typename... Args>
    void info(fmt::format_string<Args...> f, Args&&... args) {
        if (enabled(LogLevel::info)) write(LogLevel::info, fmt::format(f, std::forward<Args>(args)...));
    }
    template <typename... Args>
    void debug(fmt::format_string<Args...> f, Args&&... args) {
        if (enabled(LogLevel::debug)) write(LogLevel::debug, fmt::format(f, std::forward<Args>(args)...));
    }

    void write(LogLevel level, std::string_view text);

private:
    std::string m_tool;
    LogLevel m_level;
    bool m_journal;
};

}  // namespace mh
