#include "message/time.h"

#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace mh {
namespace {

// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = static_cast<int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp + (mp < 10 ? 3 : -9);
    y += m <= 2;
}

bool read_digits(std::string_view text, size_t& pos, size_t count, unsigned& value) {
    if (pos + count > text.size()) return false;
    value = 0;
    for (size_t i = 0; i < count; ++i) {
        char c = text[pos + i];
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    pos += count;
    return true;
}

bool expect(std::string_view text, size_t& pos, char c) {
    if (pos >= text.size() || text[pos] != c) return false;
    ++pos;
    return true;
}

char* two_digits(unsigned v, char* out) {
    *out++ = static_cast<char>('0' + v / 10);
    *out++ = static_cast<char>('0' + v % 10);
    return out;
}

}  // namespace

namespace {

int64_t real_clock_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * k_ns_per_second + ts.tv_nsec;
}

// How far MH_NOW moves this process's wall clock (0 without it); read once, at the first
// reading of the clock.
int64_t clock_offset_ns() {
    static const int64_t offset = [] {
        const char* pinned = std::getenv(k_now_env);
        if (!pinned || !*pinned) return int64_t{0};
        std::string_view text(pinned);
        std::optional<int64_t> ns = parse_rfc3339(text);
        if (!ns) {
            int64_t value = 0;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
            if (ec == std::errc() && end == text.data() + text.size()) ns = value;
        }
        if (!ns) {
            std::fprintf(stderr, "mh: %s=%s is neither RFC 3339 nor integer nanoseconds: the real clock is used\n",
                         k_now_env, pinned);
            return int64_t{0};
        }
        return *ns - real_clock_ns();
    }();
    return offset;
}

}  // namespace

int64_t wall_clock_ns() { return real_clock_ns() + clock_offset_ns(); }

std::optional<int64_t> parse_rfc3339(std::string_view text) {
    size_t pos = 0;
    unsigned year, month, day, hour, minute, second;
    if (!read_digits(text, pos, 4, year) || !expect(text, pos, '-') ||
        !read_digits(text, pos, 2, month) || !expect(text, pos, '-') ||
        !read_digits(text, pos, 2, day))
        return std::nullopt;
    if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' '))
        return std::nullopt;
    ++pos;
    if (!read_digits(text, pos, 2, hour) || !expect(text, pos, ':') ||
        !read_digits(text, pos, 2, minute) || !expect(text, pos, ':') ||
        !read_digits(text, pos, 2, second))
        return std::nullopt;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return std::nullopt;

    int64_t fraction_ns = 0;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        size_t digits = 0;
        int64_t scale = k_ns_per_second;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
            if (digits < 9) {
                scale /= 10;
                fraction_ns += (text[pos] - '0') * scale;
            }
            ++digits;
            ++pos;
        }
        if (digits == 0) return std::nullopt;
    }

    int64_t offset_s = 0;
    if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
        ++pos;
    } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
        int sign = text[pos] == '-' ? -1 : 1;
        ++pos;
        unsigned oh, om;
        if (!read_digits(text, pos, 2, oh) || !expect(text, pos, ':') ||
            !read_digits(text, pos, 2, om) || oh > 23 || om > 59)
            return std::nullopt;
        offset_s = sign * static_cast<int64_t>(oh * 3600 + om * 60);
    } else {
        return std::nullopt;
    }
    if (pos != text.size()) return std::nullopt;

    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                      second - offset_s;
    // Past the int64 nanosecond range (years 1677 to 2262) there is no such time.
    constexpr int64_t k_max_seconds = INT64_MAX / k_ns_per_second - 1;
    if (seconds > k_max_seconds || seconds < -k_max_seconds) return std::nullopt;
    return seconds * k_ns_per_second + fraction_ns;
}

char* format_rfc3339(int64_t unix_ns, char* out) {
    int64_t seconds = unix_ns / k_ns_per_second;
    int64_t fraction = unix_ns % k_ns_per_second;
    if (fraction < 0) {
        fraction += k_ns_per_second;
        --seconds;
    }
    int64_t days = seconds / 86400;
    int64_t in_day = seconds % 86400;
    if (in_day < 0) {
        in_day += 86400;
        --days;
    }
    int64_t year;
    unsigned month, day;
    civil_from_days(days, year, month, day);
    out = std::to_chars(out, out + 8, year).ptr;
    *out++ = '-';
    out = two_digits(month, out);
    *out++ = '-';
    out = two_digits(day, out);
    *out++ = 'T';
    out = two_digits(static_cast<unsigned>(in_day / 3600), out);
    *out++ = ':';
    out = two_digits(static_cast<unsigned>(in_day / 60 % 60), out);
    *out++ = ':';
    out = two_digits(static_cast<unsigned>(in_day % 60), out);
    if (fraction != 0) {
        int digits = fraction % 1'000'000 == 0 ? 3 : fraction % 1'000 == 0 ? 6 : 9;
        int64_t value = fraction / (digits == 3 ? 1'000'000 : digits == 6 ? 1'000 : 1);
        *out++ = '.';
        for (int i = digits - 1; i >= 0; --i) {
            out[i] = static_cast<char>('0' + value % 10);
            value /= 10;
        }
        out += digits;
    }
    *out++ = 'Z';
    return out;
}

std::string format_rfc3339(int64_t unix_ns) {
    char buffer[k_rfc3339_max_chars];
    return std::string(buffer, format_rfc3339(unix_ns, buffer));
}

std::optional<int64_t> parse_duration_ns(std::string_view text) {
    if (text.empty()) return std::nullopt;
    int64_t total = 0;
    size_t pos = 0;
    bool bare_number = true;
    while (pos < text.size()) {
        size_t start = pos;
        while (pos < text.size() && ((text[pos] >= '0' && text[pos] <= '9') || text[pos] == '.'))
            ++pos;
        if (pos == start) return std::nullopt;
        double value = 0;
        auto [end, ec] = std::from_chars(text.data() + start, text.data() + pos, value);
        if (ec != std::errc() || end != text.data() + pos) return std::nullopt;
        size_t unit_start = pos;
        while (pos < text.size() && ((text[pos] >= 'a' && text[pos] <= 'z'))) ++pos;
        std::string_view unit = text.substr(unit_start, pos - unit_start);
        double scale;
        if (unit.empty()) {
            if (pos != text.size() || !bare_number) return std::nullopt;
            scale = k_ns_per_second;
        } else if (unit == "ns") {
            scale = 1;
        } else if (unit == "us") {
            scale = k_ns_per_us;
        } else if (unit == "ms") {
            scale = k_ns_per_ms;
        } else if (unit == "s") {
            scale = k_ns_per_second;
        } else if (unit == "m") {
            scale = 60.0 * k_ns_per_second;
        } else if (unit == "h") {
            scale = 3600.0 * k_ns_per_second;
        } else if (unit == "d") {
            scale = 86400.0 * k_ns_per_second;
        } else {
            return std::nullopt;
        }
        bare_number = false;
        // Beyond about 292 years int64 nanoseconds overflow: not a duration we can hold.
        double part = value * scale;
        if (!(part < 9.2e18)) return std::nullopt;
        if (__builtin_add_overflow(total, static_cast<int64_t>(part), &total)) return std::nullopt;
    }
    return total;
}

std::optional<int64_t> parse_time_arg(std::string_view text) {
    if (text == "now") return wall_clock_ns();
    int64_t ns = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ns);
    if (ec == std::errc() && end == text.data() + text.size()) return ns;
    return parse_rfc3339(text);
}

}  // namespace mh
