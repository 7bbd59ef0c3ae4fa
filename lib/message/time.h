// Time as mh carries it: int64 nanoseconds since the Unix epoch, written as RFC 3339.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mh {

constexpr int64_t k_ns_per_us = 1'000;
constexpr int64_t k_ns_per_ms = 1'000'000;
constexpr int64_t k_ns_per_second = 1'000'000'000;
constexpr size_t k_rfc3339_max_chars = 40;

// The environment variable that sets the wall clock for tests (mh-route test): the clock
// reads MH_NOW (RFC 3339 or integer ns) when first read in a process, then advances with
// real time, so that now() in expressions, wall-clock windows and alert times are
// reproducible while timers and back-offs still see time pass.
constexpr const char* k_now_env = "MH_NOW";

// The wall clock, moved by MH_NOW when it is set.
int64_t wall_clock_ns();

// "2026-11-26T15:20:42.5Z", "2026-11-26 15:20:42+01:00", fraction up to 9 digits.
std::optional<int64_t> parse_rfc3339(std::string_view text);

// UTC with the shortest of 0, 3, 6 or 9 fraction digits that is exact; returns the end.
char* format_rfc3339(int64_t unix_ns, char* out);
std::string format_rfc3339(int64_t unix_ns);

// "250ms", "5s", "1m30s", "2h", "1d", "10us", "100ns"; a bare number is seconds.
std::optional<int64_t> parse_duration_ns(std::string_view text);

// A time given on a command line: RFC 3339, integer nanoseconds, or "now".
std::optional<int64_t> parse_time_arg(std::string_view text);

}  // namespace mh
