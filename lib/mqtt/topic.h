// MQTT topic names and filters (MQTT 3.1.1 section 4.7): validation of what a client sends
// and the matching of names against filters with the '+' and '#' wildcards. Pure functions
// over text, no allocation.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace mh::mqtt {

constexpr size_t k_max_string_bytes = 65535;  // an MQTT string has a 16-bit length

// What is wrong with a piece of MQTT text, the first problem found.
enum class TextError {
    bad_utf8,  // not well-formed UTF-8 (overlong forms, surrogates, beyond U+10FFFF, cut short)
    nul,       // U+0000, forbidden in every MQTT string [MQTT-1.5.3-2]
    control,   // U+0001..U+001F or U+007F..U+009F ("SHOULD NOT" in the spec; refused in topics)
};

// Checks that `text` is well-formed UTF-8 without U+0000; with `allow_control` false,
// control characters are refused too. nullopt when it is fine.
std::optional<TextError> check_text(std::string_view text, bool allow_control);

enum class TopicError {
    empty,          // zero length [MQTT-4.7.3-1]
    too_long,       // over k_max_string_bytes
    bad_utf8,
    nul,
    control,
    wildcard,       // '+' or '#' in a topic name [MQTT-3.3.2-2]
    bad_wildcard,   // in a filter: '#' not alone as the last level, '+' not a whole level
};

const char* describe(TopicError error);

// A topic name, as in PUBLISH: non-empty UTF-8 text without control characters and without
// wildcards. nullopt when valid.
std::optional<TopicError> check_topic_name(std::string_view name);

// A topic filter, as in SUBSCRIBE and UNSUBSCRIBE: as a name, but '+' may stand for one whole
// level and '#' for the last level and all below it ("a/+/c", "a/#", "#"). nullopt when valid.
std::optional<TopicError> check_topic_filter(std::string_view filter);

// Whether the (valid) topic name matches the (valid) filter. "a/#" matches "a" and everything
// below it; '+' matches one level, an empty one included; a filter starting with a wildcard
// does not match names starting with '$' [MQTT-4.7.2-1].
bool topic_matches(std::string_view filter, std::string_view name);

}  // namespace mh::mqtt
