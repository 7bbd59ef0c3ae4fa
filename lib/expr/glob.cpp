#include "expr/glob.h"

namespace mh::expr {
namespace {

// Matches one class starting at pattern[p] == '['; sets `next` past the ']'.
bool class_match(std::string_view pattern, size_t p, char c, size_t& next) {
    size_t i = p + 1;
    bool negate = i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^');
    if (negate) ++i;
    bool found = false;
    bool first = true;
    while (i < pattern.size() && (pattern[i] != ']' || first)) {
        first = false;
        char lo = pattern[i];
        if (lo == '\\' && i + 1 < pattern.size()) lo = pattern[++i];
        char hi = lo;
        if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
            hi = pattern[i + 2];
            if (hi == '\\' && i + 3 < pattern.size()) hi = pattern[++i + 2];
            i += 2;
        }
        if (c >= lo && c <= hi) found = true;
        ++i;
    }
    next = i + 1;
    return found != negate;
}

}  // namespace

std::optional<std::string> check_glob(std::string_view pattern) {
    for (size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] == '\\') {
            ++i;
        } else if (pattern[i] == '[') {
            size_t j = i + 1;
            if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) ++j;
            if (j < pattern.size() && pattern[j] == ']') ++j;  // a leading ] is literal
            while (j < pattern.size() && pattern[j] != ']') j += pattern[j] == '\\' ? 2 : 1;
            if (j >= pattern.size()) return "unclosed '[' in glob pattern";
            i = j;
        }
    }
    return std::nullopt;
}

bool glob_match(std::string_view pattern, std::string_view text) {
    size_t p = 0, t = 0;
    size_t star_p = std::string_view::npos, star_t = 0;
    while (t < text.size()) {
        if (p < pattern.size()) {
            char c = pattern[p];
            if (c == '*') {
                star_p = p++;
                star_t = t;
                continue;
            }
            if (c == '?') {
                ++p;
                ++t;
                continue;
            }
            if (c == '[') {
                size_t next;
                if (class_match(pattern, p, text[t], next)) {
                    p = next;
                    ++t;
                    continue;
                }
            } else {
                if (c == '\\' && p + 1 < pattern.size()) c = pattern[++p];
                if (c == text[t]) {
                    ++p;
                    ++t;
                    continue;
                }
            }
        }
        // Mismatch: let the last '*' swallow one more character, or fail.
        if (star_p == std::string_view::npos) return false;
        p = star_p + 1;
        t = ++star_t;
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

}  // namespace mh::expr
