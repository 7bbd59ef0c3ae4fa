#include "core/log.h"

#include <unistd.h>

#include <cstdlib>

namespace mh {

std::optional<LogLevel> parse_log_level(std::string_view text) {
    if (text == "error") return LogLevel::error;
    if (text == "warn" || text == "warning") return LogLevel::warn;
    if (text == "info") return LogLevel::info;
    if (text == "debug") return LogLevel::debug;
    return std::nullopt;
}

Log::Log(std::string tool, LogLevel level)
    : m_tool(std::move(tool)), m_level(level), m_journal(std::getenv("JOURNAL_STREAM") != nullptr) {}

void Log::write(LogLevel level, std::string_view text) {
    std::string line;
    if (m_journal) line = fmt::format("<{}>", static_cast<int>(level));
    std::string_view word = level == LogLevel::error  ? "error: "
                            : level == LogLevel::warn ? "warning: "
                                                      : "";
    fmt::format_to(std::back_inserter(line), "{}: {}{}\n", m_tool, word, text);
    // One write per line, so lines from concurrent stages never interleave mid-line.
    [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace mh
