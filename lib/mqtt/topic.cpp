#include "mqtt/topic.h"

#include <cstdint>

namespace mh::mqtt {

std::optional<TextError> check_text(std::string_view text, bool allow_control) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    while (p < end) {
        unsigned char c = *p;
        if (c < 0x80) {  // the common case: ASCII
            if (c == 0) return TextError::nul;
            if (!allow_control && (c < 0x20 || c == 0x7f)) return TextError::control;
            ++p;
            continue;
        }
        uint32_t code;
        size_t length;
        uint32_t min_code;
        if ((c & 0xe0) == 0xc0) {
            code = c & 0x1f, length = 2, min_code = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            code = c & 0x0f, length = 3, min_code = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            code = c & 0x07, length = 4, min_code = 0x10000;
        } else {
            return TextError::bad_utf8;
        }
        if (static_cast<size_t>(end - p) < length) return TextError::bad_utf8;
        for (size_t i = 1; i < length; ++i) {
            if ((p[i] & 0xc0) != 0x80) return TextError::bad_utf8;
            code = (code << 6) | (p[i] & 0x3f);
        }
        if (code < min_code || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
            return TextError::bad_utf8;
        if (!allow_control && code <= 0x9f) return TextError::control;  // C1: U+0080..U+009F
        p += length;
    }
    return std::nullopt;
}

const char* describe(TopicError error) {
    switch (error) {
        case TopicError::empty: return "empty topic";
        case TopicError::too_long: return "topic longer than 65535 bytes";
        case TopicError::bad_utf8: return "topic is not valid UTF-8";
        case TopicError::nul: return "topic contains U+0000";
        case TopicError::control: return "topic contains a control character";
        case TopicError::wildcard: return "wildcard '+' or '#' in a topic name";
        case TopicError::bad_wildcard: return "'#' must be the whole last level and '+' a whole level";
    }
    return "bad topic";
}

namespace {
std::optional<TopicError> check_topic_text(std::string_view topic) {
    if (topic.empty()) return TopicError::empty;
    if (topic.size() > k_max_string_bytes) return TopicError::too_long;
    if (auto error = check_text(topic, false)) {
        switch (*error) {
            case TextError::bad_utf8: return TopicError::bad_utf8;
            case TextError::nul: return TopicError::nul;
            case TextError::control: return TopicError::control;
        }
    }
    return std::nullopt;
}
}  // namespace

std::optional<TopicError> check_topic_name(std::string_view name) {
    if (auto error = check_topic_text(name)) return error;
    if (name.find_first_of("+#") != std::string_view::npos) return TopicError::wildcard;
    return std::nullopt;
}

std::optional<TopicError> check_topic_filter(std::string_view filter) {
    if (auto error = check_topic_text(filter)) return error;
    for (size_t i = 0; i < filter.size(); ++i) {
        char c = filter[i];
        if (c != '+' && c != '#') continue;
        bool starts_level = i == 0 || filter[i - 1] == '/';
        bool ends_level = i + 1 == filter.size() || filter[i + 1] == '/';
        if (!starts_level || !ends_level) return TopicError::bad_wildcard;
        if (c == '#' && i + 1 != filter.size()) return TopicError::bad_wildcard;
    }
    return std::nullopt;
}

bool topic_matches(std::string_view filter, std::string_view name) {
    if (!name.empty() && name[0] == '$' && !filter.empty() && (filter[0] == '+' || filter[0] == '#'))
        return false;
    size_t f = 0, n = 0;
    while (true) {
        // One level of each: [f, f_end) and [n, n_end).
        size_t f_end = filter.find('/', f);
        if (f_end == std::string_view::npos) f_end = filter.size();
        std::string_view f_level = filter.substr(f, f_end - f);
        if (f_level == "#") return true;  // this level and all below, or none ("a/#" matches "a")
        size_t n_end = name.find('/', n);
        if (n_end == std::string_view::npos) n_end = name.size();
        std::string_view n_level = name.substr(n, n_end - n);
        if (f_level != "+" && f_level != n_level) return false;
        bool filter_done = f_end == filter.size();
        bool name_done = n_end == name.size();
        if (filter_done || name_done) {
            if (filter_done && name_done) return true;
            if (name_done) {
                // "a/#" matches "a": the rest of the filter must be exactly "/#".
                return filter.substr(f_end) == "/#";
            }
            return false;
        }
        f = f_end + 1;
        n = n_end + 1;
    }
}

}  // namespace mh::mqtt
