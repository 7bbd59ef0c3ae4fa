#include "json/json_codec.h"

#include "message/id.h"
#include "message/scratch_builder.h"
#include "message/time.h"

#include <capnp/serialize.h>
#include <fmt/format.h>
#include <kj/exception.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace mh {
namespace {

namespace od = simdjson::ondemand;
using FieldValue = schema::Field::Value;

static_assert(wire::k_read_padding_bytes >= simdjson::SIMDJSON_PADDING,
              "lines must carry the padding simdjson reads past their end");

enum class TopKey { field, id, time, ingested, source, gateway, kind, body, barrier };

// Which header key `key` is, if any: by length and first byte, so that a field's key is
// mostly told apart without a comparison.
inline TopKey top_key(std::string_view key) {
    auto is = [&](std::string_view name, TopKey which) {
        return std::memcmp(key.data(), name.data(), name.size()) == 0 ? which : TopKey::field;
    };
    switch (key.size()) {
        case 2:
            return is("id", TopKey::id);
        case 4:
            switch (key[0]) {
                case 't': return is("time", TopKey::time);
                case 'k': return is("kind", TopKey::kind);
                case 'b': return is("body", TopKey::body);
                default: return TopKey::field;
            }
        case 6:
            return key[0] == 's' ? is("source", TopKey::source) : TopKey::field;
        case 7:
            return key[0] == 'g' ? is("gateway", TopKey::gateway) : TopKey::field;
        case 8:
            switch (key[0]) {
                case 'i': return is("ingested", TopKey::ingested);
                case '$': return is("$barrier", TopKey::barrier);
                default: return TopKey::field;
            }
        default:
            return TopKey::field;
    }
}

bool is_reserved_key(std::string_view key) {
    // By length first: most keys are fields, and most of them differ in length from all
    // the reserved keys or in their first byte, so that no comparison is made.
    switch (key.size()) {
        case 2:
            return key == "id";
        case 4:
            return key[0] == 't' ? key == "time" : key[0] == 'k' ? key == "kind" : key == "body";
        case 6:
            return key == "source";
        case 7:
            return key == "gateway";
        case 8:
            return key[0] == 'i' ? key == "ingested" : key == "$barrier";
        default:
            return false;
    }
}

std::string_view trim_json_space(std::string_view text) {
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n' ||
                             text.back() == '\r'))
        text.remove_suffix(1);
    return text;
}

std::string json_quoted(std::string_view text) {
    std::string out;
    json::append_string(out, text);
    return out;
}

std::string invalid_json(simdjson::error_code error, std::string_view where) {
    return fmt::format("invalid JSON {}: {}", where, simdjson::error_message(error));
}

std::string too_deep() { return fmt::format("nested deeper than {} levels", k_max_json_depth); }

// Walks a value that will be kept as JSON text, so that what is kept is valid JSON: the
// on-demand parser only checks what is read. `depth` is the depth a container here has.
std::optional<std::string> validate_value(od::value& value, size_t depth) {
    od::json_type type;
    if (auto error = value.type().get(type)) return invalid_json(error, "in an array");
    switch (type) {
        case od::json_type::array: {
            if (depth > k_max_json_depth) return too_deep();
            od::array array;
            if (auto error = value.get_array().get(array))
                return invalid_json(error, "in an array");
            for (auto element : array) {
                od::value item;
                if (auto error = std::move(element).get(item))
                    return invalid_json(error, "in an array");
                if (auto reason = validate_value(item, depth + 1)) return reason;
            }
            return std::nullopt;
        }
        case od::json_type::object: {
            if (depth > k_max_json_depth) return too_deep();
            od::object object;
            if (auto error = value.get_object().get(object))
                return invalid_json(error, "in an array");
            for (auto member : object) {
                od::field field;
                std::string_view key;
                if (auto error = std::move(member).get(field))
                    return invalid_json(error, "in an array");
                if (auto error = field.unescaped_key().get(key))
                    return invalid_json(error, "in an array");
                if (auto reason = validate_value(field.value(), depth + 1)) return reason;
            }
            return std::nullopt;
        }
        case od::json_type::number: {
            od::number_type number_type;
            if (auto error = value.get_number_type().get(number_type))
                return invalid_json(error, "in an array");
            if (number_type == od::number_type::floating_point_number) {
                double ignored;
                if (auto error = value.get_double().get(ignored))
                    return invalid_json(error, "in an array");
            } else if (!json::is_integer_text(trim_json_space(value.raw_json_token()))) {
                return invalid_json(simdjson::NUMBER_ERROR, "in an array");
            }
            return std::nullopt;
        }
        case od::json_type::string: {
            std::string_view ignored;
            if (auto error = value.get_string().get(ignored))
                return invalid_json(error, "in an array");
            return std::nullopt;
        }
        case od::json_type::boolean: {
            bool ignored;
            if (auto error = value.get_bool().get(ignored))
                return invalid_json(error, "in an array");
            return std::nullopt;
        }
        case od::json_type::null: {
            bool is_null = false;
            if (auto error = value.is_null().get(is_null))
                return invalid_json(error, "in an array");
            if (!is_null) return invalid_json(simdjson::N_ATOM_ERROR, "in an array");
            return std::nullopt;
        }
    }
    return invalid_json(simdjson::TAPE_ERROR, "in an array");
}

// RFC 3339's years outside 1678..2261 overflow parse_rfc3339's int64 arithmetic. The
// Gregorian calendar repeats every 400 years, so the edge years 1677 and 2262 (partly in
// range) are read 400 years closer to 1970 and moved back with a range check.
constexpr int k_first_safe_year = 1678;
constexpr int k_last_safe_year = 2261;
constexpr __int128 k_400_years_ns = static_cast<__int128>(146097) * 86400 * k_ns_per_second;
constexpr size_t k_max_time_text_chars = 64;

std::optional<int64_t> parse_rfc3339_in_range(std::string_view text) {
    if (text.size() < 4 || text.size() > k_max_time_text_chars) return std::nullopt;
    int year = 0;
    for (size_t i = 0; i < 4; ++i) {
        if (text[i] < '0' || text[i] > '9') return std::nullopt;
        year = year * 10 + (text[i] - '0');
    }
    if (year >= k_first_safe_year && year <= k_last_safe_year) return parse_rfc3339(text);
    if (year != k_first_safe_year - 1 && year != k_last_safe_year + 1) return std::nullopt;
    char shifted[k_max_time_text_chars];
    std::memcpy(shifted, text.data(), text.size());
    int shifted_year = year < k_first_safe_year ? year + 400 : year - 400;
    for (int i = 3; i >= 0; --i, shifted_year /= 10)
        shifted[i] = static_cast<char>('0' + shifted_year % 10);
    auto ns = parse_rfc3339(std::string_view(shifted, text.size()));
    if (!ns) return std::nullopt;
    __int128 actual = *ns + (year < k_first_safe_year ? -k_400_years_ns : k_400_years_ns);
    if (actual < std::numeric_limits<int64_t>::min() ||
        actual > std::numeric_limits<int64_t>::max())
        return std::nullopt;
    return static_cast<int64_t>(actual);
}

// ---- UTF-8 and escaping ----------------------------------------------------------------

// Bytes a JSON string cannot carry as they are: quote, backslash, controls; and the start
// of every multi-byte UTF-8 sequence, which is checked.
constexpr std::array<bool, 256> k_special = [] {
    std::array<bool, 256> table{};
    for (int c = 0; c < 0x20; ++c) table[c] = true;
    for (int c = 0x80; c < 0x100; ++c) table[c] = true;
    table['"'] = table['\\'] = true;
    return table;
}();

// Length of the valid UTF-8 sequence at `p`, or 0 with `bad` = how many bytes make up the
// maximal invalid prefix (replaced by one U+FFFD, as Unicode recommends).
size_t utf8_sequence(const unsigned char* p, const unsigned char* end, size_t& bad) {
    unsigned char c = p[0];
    size_t need;
    unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) low = 0xA0;   // no overlong forms
        if (c == 0xED) high = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) low = 0x90;
        if (c == 0xF4) high = 0x8F;  // nothing above U+10FFFF
    } else {
        bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; ++i) {
        if (p + i >= end || p[i] < (i == 1 ? low : 0x80) || p[i] > (i == 1 ? high : 0xBF)) {
            bad = i;
            return 0;
        }
    }
    return need + 1;
}

constexpr std::string_view k_replacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

void append_unicode_escape(std::string& out, uint32_t code) {
    static constexpr char k_hex[] = "0123456789abcdef";
    char escape[6] = {'\\',
                      'u',
                      k_hex[code >> 12 & 0xF],
                      k_hex[code >> 8 & 0xF],
                      k_hex[code >> 4 & 0xF],
                      k_hex[code & 0xF]};
    out.append(escape, sizeof(escape));
}

void append_escape(std::string& out, unsigned char c) {
    switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        case '\b':
            out += "\\b";
            break;
        case '\f':
            out += "\\f";
            break;
        default:
            append_unicode_escape(out, c);
    }
}

bool is_valid_utf8(std::string_view text) {
    return simdjson::validate_utf8(text.data(), text.size());
}

// ---- Base64 ------------------------------------------------------------------------------

constexpr char k_base64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> k_base64_values = [] {
    std::array<int8_t, 256> table{};
    table.fill(-1);
    for (int i = 0; i < 64; ++i)
        table[static_cast<unsigned char>(k_base64[i])] = static_cast<int8_t>(i);
    table['-'] = 62;  // URL-safe alphabet
    table['_'] = 63;
    return table;
}();

}  // namespace

// ---- Building blocks ---------------------------------------------------------------------

namespace json {

void append_string(std::string& out, std::string_view text, NonAscii non_ascii) {
    out.push_back('"');
    auto* p = reinterpret_cast<const unsigned char*>(text.data());
    auto* end = p + text.size();
    while (p < end) {
        auto* run = p;
        while (p < end && !k_special[*p]) ++p;
        out.append(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
        if (p == end) break;
        if (*p < 0x80) {
            append_escape(out, *p++);
            continue;
        }
        size_t bad = 0;
        size_t length = utf8_sequence(p, end, bad);
        if (length == 0) {
            if (non_ascii == NonAscii::escape)
                out += "\\ufffd";
            else
                out += k_replacement;
            p += bad;
            continue;
        }
        uint32_t code = length == 2   ? (p[0] & 0x1Fu) << 6 | (p[1] & 0x3Fu)
                        : length == 3 ? (p[0] & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu)
                                      : (p[0] & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 |
                                            (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
        // C1 controls can act as terminal escapes even where other text is kept as it is.
        if (non_ascii == NonAscii::keep && code > 0x9F) {
            out.append(reinterpret_cast<const char*>(p), length);
        } else if (code < 0x10000) {
            append_unicode_escape(out, code);
        } else {
            code -= 0x10000;  // a surrogate pair
            append_unicode_escape(out, 0xD800 + (code >> 10));
            append_unicode_escape(out, 0xDC00 + (code & 0x3FF));
        }
        p += length;
    }
    out.push_back('"');
}

void append_float(std::string& out, double value) {
    char buffer[32];
    char* end = fmt::format_to(buffer, "{}", value);
    out.append(buffer, end);
    // "21" would read back as an integer.
    if (std::find_if(buffer, end, [](char c) { return c == '.' || c == 'e' || c == 'n'; }) == end)
        out += ".0";
}

void append_base64(std::string& out, std::span<const std::byte> bytes) {
    size_t i = 0;
    auto byte = [&](size_t k) { return static_cast<uint32_t>(bytes[k]); };
    for (; i + 3 <= bytes.size(); i += 3) {
        uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
        char quad[4] = {k_base64[v >> 18], k_base64[v >> 12 & 63], k_base64[v >> 6 & 63],
                        k_base64[v & 63]};
        out.append(quad, 4);
    }
    if (size_t rest = bytes.size() - i) {
        uint32_t v = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0);
        char quad[4] = {k_base64[v >> 18], k_base64[v >> 12 & 63],
                        rest == 2 ? k_base64[v >> 6 & 63] : '=', '='};
        out.append(quad, 4);
    }
}

bool decode_base64(std::string_view text, std::string& out) {
    while (!text.empty() && text.back() == '=') text.remove_suffix(1);
    if (text.size() % 4 == 1) return false;
    uint32_t bits = 0;
    int bit_count = 0;
    for (char c : text) {
        int8_t value = k_base64_values[static_cast<unsigned char>(c)];
        if (value < 0) return false;
        bits = bits << 6 | static_cast<uint32_t>(value);
        bit_count += 6;
        if (bit_count >= 8) {
            bit_count -= 8;
            out.push_back(static_cast<char>(bits >> bit_count & 0xFF));
        }
    }
    return true;
}

std::optional<int64_t> parse_time_text(std::string_view text) {
    if (is_integer_text(text)) {
        int64_t ns = 0;
        auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), ns);
        if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
        return ns;
    }
    return parse_rfc3339_in_range(text);
}

bool is_integer_text(std::string_view text) {
    size_t i = !text.empty() && text[0] == '-' ? 1 : 0;
    if (i >= text.size()) return false;
    if (text[i] == '0') return i + 1 == text.size();
    for (; i < text.size(); ++i)
        if (text[i] < '0' || text[i] > '9') return false;
    return true;
}

}  // namespace json

// ---- JsonDecoder -------------------------------------------------------------------------

struct JsonDecoder::Impl {
    struct PendingField {
        // A top-level key is used where the parser left it; nested names are made in
        // m_names (name_data null, name_offset into it).
        const char* name_data;
        uint32_t name_offset;
        uint32_t name_size;
        FieldValue::Which which;
        bool dropped;  // a later duplicate took its value
        double float_value;
        int64_t int_value;
        bool bool_value;
        std::string_view text;  // text, or json: into the line or the parser's string buffer
    };

    od::parser m_parser;
    // The fast path: the DOM parser runs the CPU's own kernels (the on-demand API only has
    // the portable one here). Whatever it does not decode plainly, the on-demand path
    // decodes again, which gives every refusal its reason.
    simdjson::dom::parser m_dom;
    ScratchBuilder m_builder;
    std::string m_copy;  // the line with padding, when the caller had none
    std::vector<PendingField> m_fields;
    std::vector<uint32_t> m_order;
    std::string m_names;
    std::string m_prefix;  // "motor." while inside "motor"
    std::string m_body_bytes;
    od::document* m_document = nullptr;

    // The header, as read so far.
    std::optional<MessageId> m_id;
    int64_t m_time = 0, m_ingested = 0;
    std::string_view m_source, m_gateway, m_kind, m_body;
    std::optional<uint64_t> m_barrier;
    std::string_view m_non_barrier_key;  // a key a barrier must not have

    std::optional<std::string> decode(std::string_view line, std::vector<std::byte>& out,
                                      Padding padding);
    void reset();
    bool dom_decode(const char* text, size_t size);
    bool dom_top(std::string_view key, simdjson::dom::element value);
    bool dom_field(std::string_view key, simdjson::dom::element value, size_t depth);
    std::optional<std::string> read_top(std::string_view key, od::value& value);
    std::optional<std::string> read_field(std::string_view key, od::value& value, size_t depth);
    std::optional<std::string> add_field(std::string_view key, FieldValue::Which which,
                                         PendingField value);
    bool push_field(std::string_view key, FieldValue::Which which, PendingField& value);
    // A field named `key` under the current prefix, its value zero; null past k_max_fields.
    PendingField* new_field(std::string_view key, FieldValue::Which which);
    std::optional<std::string> read_time(std::string_view key, od::value& value, int64_t& ns);
    std::optional<std::string> read_text(std::string_view key, od::value& value,
                                         std::string_view& text);
    std::optional<std::string> read_body(od::value& value);
    std::string_view name_of(const PendingField& field) const {
        return {field.name_data ? field.name_data : m_names.data() + field.name_offset,
                field.name_size};
    }
    std::string where(std::string_view key) const {
        return fmt::format("in {}", json_quoted(m_prefix + std::string(key)));
    }
    // Sizes and last bytes first: names that differ mostly differ there already.
    bool same_name(const PendingField& a, const PendingField& b) const {
        if (a.name_size != b.name_size) return false;
        if (a.name_size == 0) return true;
        std::string_view name_a = name_of(a), name_b = name_of(b);
        return name_a.back() == name_b.back() && name_a[0] == name_b[0] &&
               std::memcmp(name_a.data(), name_b.data(), name_a.size()) == 0;
    }
    void drop_duplicates();
    void build(std::vector<std::byte>& out);
};

JsonDecoder::JsonDecoder() : m_impl(std::make_unique<Impl>()) {}
JsonDecoder::~JsonDecoder() = default;

std::optional<std::string> JsonDecoder::decode(std::string_view line, std::vector<std::byte>& out,
                                               Padding padding) {
    return m_impl->decode(line, out, padding);
}

std::optional<std::string> JsonDecoder::Impl::decode(std::string_view line,
                                                     std::vector<std::byte>& out, Padding padding) {
    const char* text = line.data();
    size_t capacity = line.size() + simdjson::SIMDJSON_PADDING;
    if (padding == Padding::absent) {
        m_copy.assign(line);
        m_copy.resize(capacity);
        text = m_copy.data();
    }
    if (dom_decode(text, line.size())) {
        drop_duplicates();
        build(out);
        return std::nullopt;
    }
    reset();

    od::document document;
    if (auto error = m_parser.iterate(text, line.size(), capacity).get(document))
        return invalid_json(error, "in the line");
    m_document = &document;
    od::object object;
    if (auto error = document.get_object().get(object)) {
        if (error == simdjson::INCORRECT_TYPE) return std::string("expected a JSON object");
        return invalid_json(error, "in the line");
    }
    std::string_view last_key;
    for (auto member : object) {
        od::field field;
        std::string_view key;
        auto error = std::move(member).get(field);
        if (!error) error = field.unescaped_key().get(key);
        if (error) {
            return invalid_json(error, last_key.empty() ? std::string("at the first key")
                                                        : "after " + json_quoted(last_key));
        }
        last_key = key;
        if (auto reason = read_top(key, field.value())) return reason;
    }
    const char* rest;
    if (document.current_location().get(rest) == simdjson::SUCCESS)
        return std::string("unexpected text after the JSON object");

    if (m_barrier && !m_non_barrier_key.empty())
        return fmt::format("$barrier: a barrier has no {} (only \"time\")",
                           json_quoted(m_non_barrier_key));
    drop_duplicates();
    build(out);
    return std::nullopt;
}

void JsonDecoder::Impl::reset() {
    m_fields.clear();
    m_names.clear();
    m_prefix.clear();
    m_body_bytes.clear();
    m_id.reset();
    m_time = m_ingested = 0;
    m_source = m_gateway = m_kind = m_body = {};
    m_barrier.reset();
    m_non_barrier_key = {};
}

// True when the line is decoded; false leaves it to the on-demand path, for a refusal or
// for what only that path can read (arrays and unsigned integers keep their JSON text).
bool JsonDecoder::Impl::dom_decode(const char* text, size_t size) {
    reset();
    simdjson::dom::element root;
    simdjson::dom::object object;
    if (m_dom.parse(reinterpret_cast<const uint8_t*>(text), size, false).get(root) ||
        root.get_object().get(object))
        return false;
    for (auto member : object)
        if (!dom_top(member.key, member.value)) return false;
    return !(m_barrier && !m_non_barrier_key.empty());
}

namespace {
// A string element's text, read in two scalar halves: a whole simdjson_result copied from
// memory is slower.
inline std::string_view dom_string(simdjson::dom::element value) {
    const char* data = value.get_c_str().value_unsafe();
    size_t size = value.get_string_length().value_unsafe();
    return {data, size};
}
}  // namespace

bool JsonDecoder::Impl::dom_top(std::string_view key, simdjson::dom::element value) {
    using simdjson::dom::element_type;
    TopKey which = top_key(key);
    if (which == TopKey::field) {
        m_non_barrier_key = key;
        return dom_field(key, value, 1);
    }
    auto time = [&](int64_t& ns) {
        switch (value.type()) {
            case element_type::INT64:
                ns = value.get_int64().value_unsafe();
                return true;
            case element_type::STRING:
                if (auto parsed = json::parse_time_text(dom_string(value))) {
                    ns = *parsed;
                    return true;
                }
                return false;
            case element_type::NULL_VALUE:
                ns = 0;
                return true;
            default:
                return false;
        }
    };
    auto text = [&](std::string_view& out) {
        if (value.is_null()) {
            out = {};
            return true;
        }
        if (!value.is_string()) return false;
        out = dom_string(value);
        return true;
    };
    if (which == TopKey::time) return time(m_time);
    if (which == TopKey::barrier) {
        uint64_t number;
        // Zero may have been written "-0", which the on-demand path refuses: left to it.
        if (value.type() == element_type::UINT64)
            number = value.get_uint64().value_unsafe();
        else if (value.type() != element_type::INT64 || value.get_int64().value_unsafe() <= 0)
            return false;
        else
            number = static_cast<uint64_t>(value.get_int64().value_unsafe());
        m_barrier = number;
        return true;
    }
    m_non_barrier_key = key;
    if (which == TopKey::id) {
        if (value.is_null()) {
            m_id.reset();
            return true;
        }
        return value.is_string() && (m_id = parse_id(dom_string(value)));
    }
    if (which == TopKey::ingested) return time(m_ingested);
    if (which == TopKey::source) return text(m_source);
    if (which == TopKey::gateway) return text(m_gateway);
    if (which == TopKey::kind) return text(m_kind);
    // TopKey::body
    switch (value.type()) {
        case element_type::STRING:
            m_body = dom_string(value);
            return true;
        case element_type::NULL_VALUE:
            m_body = {};
            return true;
        case element_type::OBJECT: {
            auto object = value.get_object().value_unsafe();
            if (object.size() != 1) return false;
            auto member = *object.begin();
            std::string_view base64;
            if (member.key != "base64" || member.value.get_string().get(base64)) return false;
            m_body_bytes.clear();
            if (!json::decode_base64(base64, m_body_bytes)) return false;
            m_body = m_body_bytes;
            return true;
        }
        default:
            return false;
    }
}

bool JsonDecoder::Impl::dom_field(std::string_view key, simdjson::dom::element value,
                                  size_t depth) {
    using simdjson::dom::element_type;
    PendingField* field;
    switch (value.type()) {
        case element_type::INT64:
            if (!(field = new_field(key, FieldValue::INT))) return false;
            field->int_value = value.get_int64().value_unsafe();
            return true;
        case element_type::DOUBLE: {
            double number = value.get_double().value_unsafe();
            // "-0" is read as an integer or a float depending on the API: left to the
            // on-demand path, which decides it as it always has.
            if (number == 0 && std::signbit(number)) return false;
            if (!(field = new_field(key, FieldValue::FLOAT))) return false;
            field->float_value = number;
            return true;
        }
        case element_type::STRING:
            if (!(field = new_field(key, FieldValue::TEXT))) return false;
            field->text = dom_string(value);
            return true;
        case element_type::BOOL:
            if (!(field = new_field(key, FieldValue::BOOL))) return false;
            field->bool_value = value.get_bool().value_unsafe();
            return true;
        case element_type::NULL_VALUE:
            if (!(field = new_field(key, FieldValue::JSON))) return false;
            field->text = "null";
            return true;
        case element_type::OBJECT: {
            if (depth + 1 > k_max_json_depth) return false;
            auto object = value.get_object().value_unsafe();
            size_t prefix_size = m_prefix.size();
            m_prefix += key;
            m_prefix += '.';
            bool empty = true;
            for (auto member : object) {
                if (!dom_field(member.key, member.value, depth + 1)) return false;
                empty = false;
            }
            m_prefix.resize(prefix_size);
            if (empty) {
                if (!(field = new_field(key, FieldValue::JSON))) return false;
                field->text = "{}";
            }
            return true;
        }
        default:  // arrays and unsigned integers: kept as their JSON text
            return false;
    }
}

std::optional<std::string> JsonDecoder::Impl::read_top(std::string_view key, od::value& value) {
    if (key.empty() || key.size() > 8 || !is_reserved_key(key)) {
        m_non_barrier_key = key;
        return read_field(key, value, 1);
    }
    if (key == "time") return read_time(key, value, m_time);
    if (key == "$barrier") {
        uint64_t number;
        if (value.get_uint64().get(number))
            return std::string("$barrier: expected a checkpoint number (a non-negative integer)");
        m_barrier = number;
        return std::nullopt;
    }
    m_non_barrier_key = key;
    if (key == "id") {
        bool is_null = false;
        if (value.is_null().get(is_null) == simdjson::SUCCESS && is_null) {
            m_id.reset();
            return std::nullopt;
        }
        std::string_view text;
        if (value.get_string().get(text) || !(m_id = parse_id(text)))
            return std::string("id: not a UUID");
        return std::nullopt;
    }
    if (key == "ingested") return read_time(key, value, m_ingested);
    if (key == "source") return read_text(key, value, m_source);
    if (key == "gateway") return read_text(key, value, m_gateway);
    if (key == "kind") return read_text(key, value, m_kind);
    return read_body(value);
}

std::optional<std::string> JsonDecoder::Impl::read_time(std::string_view key, od::value& value,
                                                        int64_t& ns) {
    od::json_type type;
    if (auto error = value.type().get(type)) return invalid_json(error, where(key));
    if (type == od::json_type::number) {
        if (value.get_int64().get(ns) == simdjson::SUCCESS) return std::nullopt;
    } else if (type == od::json_type::string) {
        std::string_view text;
        if (auto error = value.get_string().get(text)) return invalid_json(error, where(key));
        if (auto parsed = json::parse_time_text(text)) {
            ns = *parsed;
            return std::nullopt;
        }
    } else if (type == od::json_type::null) {
        ns = 0;
        return std::nullopt;
    }
    return fmt::format("{}: expected integer nanoseconds or RFC 3339 text", key);
}

std::optional<std::string> JsonDecoder::Impl::read_text(std::string_view key, od::value& value,
                                                        std::string_view& text) {
    bool is_null = false;
    if (value.is_null().get(is_null) == simdjson::SUCCESS && is_null) {
        text = {};
        return std::nullopt;
    }
    if (auto error = value.get_string().get(text)) {
        if (error == simdjson::INCORRECT_TYPE) return fmt::format("{}: expected a string", key);
        return invalid_json(error, where(key));
    }
    return std::nullopt;
}

std::optional<std::string> JsonDecoder::Impl::read_body(od::value& value) {
    static const std::string k_expected = "body: expected a string or {\"base64\": \"...\"}";
    od::json_type type;
    if (auto error = value.type().get(type)) return invalid_json(error, where("body"));
    switch (type) {
        case od::json_type::string:
            if (auto error = value.get_string().get(m_body))
                return invalid_json(error, where("body"));
            return std::nullopt;
        case od::json_type::null:
            m_body = {};
            return std::nullopt;
        case od::json_type::object: {
            od::object object;
            if (auto error = value.get_object().get(object))
                return invalid_json(error, where("body"));
            bool found = false;
            for (auto member : object) {
                od::field field;
                std::string_view key, text;
                auto error = std::move(member).get(field);
                if (!error) error = field.unescaped_key().get(key);
                if (error) return invalid_json(error, where("body"));
                if (key != "base64" || found) return k_expected;
                if (field.value().get_string().get(text)) return k_expected;
                m_body_bytes.clear();
                if (!json::decode_base64(text, m_body_bytes))
                    return std::string("body: invalid base64");
                found = true;
            }
            if (!found) return k_expected;
            m_body = m_body_bytes;
            return std::nullopt;
        }
        default:
            return k_expected;
    }
}

std::optional<std::string> JsonDecoder::Impl::add_field(std::string_view key,
                                                        FieldValue::Which which,
                                                        PendingField value) {
    if (!push_field(key, which, value)) return fmt::format("more than {} fields", k_max_fields);
    return std::nullopt;
}

bool JsonDecoder::Impl::push_field(std::string_view key, FieldValue::Which which,
                                   PendingField& value) {
    PendingField* field = new_field(key, which);
    if (!field) return false;
    field->float_value = value.float_value;
    field->int_value = value.int_value;
    field->bool_value = value.bool_value;
    field->text = value.text;
    return true;
}

JsonDecoder::Impl::PendingField* JsonDecoder::Impl::new_field(std::string_view key,
                                                              FieldValue::Which which) {
    if (m_fields.size() >= k_max_fields) return nullptr;
    PendingField& value = m_fields.emplace_back();
    if (m_prefix.empty()) {
        value.name_data = key.data();  // the line or the parser's strings: valid until build
        value.name_offset = 0;
        value.name_size = static_cast<uint32_t>(key.size());
    } else {
        value.name_data = nullptr;
        value.name_offset = static_cast<uint32_t>(m_names.size());
        m_names += m_prefix;
        m_names += key;
        value.name_size = static_cast<uint32_t>(m_names.size() - value.name_offset);
    }
    value.which = which;
    value.dropped = false;
    return &value;
}

std::optional<std::string> JsonDecoder::Impl::read_field(std::string_view key, od::value& value,
                                                         size_t depth) {
    od::json_type type;
    if (auto error = value.type().get(type)) return invalid_json(error, where(key));
    PendingField field{};
    switch (type) {
        case od::json_type::number: {
            od::number_type number_type;
            if (auto error = value.get_number_type().get(number_type))
                return invalid_json(error, where(key));
            if (number_type == od::number_type::floating_point_number) {
                if (auto error = value.get_double().get(field.float_value))
                    return invalid_json(error, where(key));
                // The portable on-demand kernel misreads numbers of more than 19 digits
                // (0.5555555555555555555555 as 0.000308...): those are read again, as the
                // DOM path reads them, correctly rounded.
                std::string_view token = trim_json_space(value.raw_json_token());
                if (token.size() > 19) {
                    double exact;
                    auto [end, error] =
                        std::from_chars(token.data(), token.data() + token.size(), exact);
                    if (error == std::errc() && end == token.data() + token.size())
                        field.float_value = exact;
                }
                return add_field(key, FieldValue::FLOAT, field);
            }
            if (number_type == od::number_type::signed_integer &&
                value.get_int64().get(field.int_value) == simdjson::SUCCESS)
                return add_field(key, FieldValue::INT, field);
            // An integer beyond int64 keeps its digits as JSON text rather than lose them.
            field.text = trim_json_space(value.raw_json_token());
            if (!json::is_integer_text(field.text))
                return invalid_json(simdjson::NUMBER_ERROR, where(key));
            return add_field(key, FieldValue::JSON, field);
        }
        case od::json_type::string:
            if (auto error = value.get_string().get(field.text))
                return invalid_json(error, where(key));
            return add_field(key, FieldValue::TEXT, field);
        case od::json_type::boolean:
            if (auto error = value.get_bool().get(field.bool_value))
                return invalid_json(error, where(key));
            return add_field(key, FieldValue::BOOL, field);
        case od::json_type::null: {
            bool is_null = false;
            if (auto error = value.is_null().get(is_null)) return invalid_json(error, where(key));
            if (!is_null) return invalid_json(simdjson::N_ATOM_ERROR, where(key));
            field.text = "null";
            return add_field(key, FieldValue::JSON, field);
        }
        case od::json_type::array: {
            if (depth + 1 > k_max_json_depth) return too_deep();
            const char* start = value.raw_json_token().data();
            if (auto reason = validate_value(value, depth + 1)) {
                return fmt::format("{}: {}", json_quoted(m_prefix + std::string(key)), *reason);
            }
            // The array ends where the parser now stands: at the ',' or '}' after it.
            const char* end;
            if (auto error = m_document->current_location().get(end))
                return invalid_json(error, where(key));
            field.text = trim_json_space(std::string_view(start, static_cast<size_t>(end - start)));
            return add_field(key, FieldValue::JSON, field);
        }
        case od::json_type::object: {
            if (depth + 1 > k_max_json_depth) return too_deep();
            od::object object;
            if (auto error = value.get_object().get(object)) return invalid_json(error, where(key));
            size_t prefix_size = m_prefix.size();
            m_prefix += key;
            m_prefix += '.';
            bool empty = true;
            for (auto member : object) {
                od::field member_field;
                std::string_view member_key;
                auto error = std::move(member).get(member_field);
                if (!error) error = member_field.unescaped_key().get(member_key);
                if (error)
                    return invalid_json(
                        error, "in " + json_quoted(m_prefix.substr(0, m_prefix.size() - 1)));
                if (auto reason = read_field(member_key, member_field.value(), depth + 1))
                    return reason;
                empty = false;
            }
            m_prefix.resize(prefix_size);
            if (empty) {
                // Nothing to flatten: kept whole so that it comes back.
                field.text = "{}";
                return add_field(key, FieldValue::JSON, field);
            }
            return std::nullopt;
        }
    }
    return invalid_json(simdjson::TAPE_ERROR, where(key));
}

void JsonDecoder::Impl::drop_duplicates() {
    // The last value wins, in the place of the first: a small message compares pairs, a
    // large one sorts, so that a line of a thousand keys costs n log n, not n squared.
    constexpr size_t k_pairwise_fields = 16;
    size_t count = m_fields.size();
    auto take = [&](PendingField& first, const PendingField& later) {
        const char* data = first.name_data;
        uint32_t offset = first.name_offset, size = first.name_size;
        first = later;
        first.name_data = data;
        first.name_offset = offset;
        first.name_size = size;
    };
    if (count <= k_pairwise_fields) {
        for (size_t i = 1; i < count; ++i) {
            for (size_t j = 0; j < i; ++j) {
                if (!m_fields[j].dropped && same_name(m_fields[j], m_fields[i])) {
                    take(m_fields[j], m_fields[i]);
                    m_fields[i].dropped = true;
                    break;
                }
            }
        }
        return;
    }
    m_order.resize(count);
    for (size_t i = 0; i < count; ++i) m_order[i] = static_cast<uint32_t>(i);
    std::sort(m_order.begin(), m_order.end(), [&](uint32_t a, uint32_t b) {
        auto name_a = name_of(m_fields[a]), name_b = name_of(m_fields[b]);
        return name_a != name_b ? name_a < name_b : a < b;
    });
    for (size_t run = 0; run < count;) {
        size_t last = run;
        while (last + 1 < count &&
               name_of(m_fields[m_order[last + 1]]) == name_of(m_fields[m_order[run]]))
            ++last;
        if (last > run) {
            take(m_fields[m_order[run]], m_fields[m_order[last]]);
            for (size_t k = run + 1; k <= last; ++k) m_fields[m_order[k]].dropped = true;
        }
        run = last + 1;
    }
}

namespace {
// Copies into a Text or Data made by `init(size)` (initSource, initName, initBody, ...).
template <typename Init>
void init_copy(Init init, std::string_view bytes) {
    auto builder = init(static_cast<unsigned>(bytes.size()));
    if (!bytes.empty()) std::memcpy(builder.begin(), bytes.data(), bytes.size());
}
}  // namespace

void JsonDecoder::Impl::build(std::vector<std::byte>& out) {
    auto message = m_builder.start();
    if (m_barrier) {
        auto barrier = message.getControl().initBarrier();
        barrier.setNumber(*m_barrier);
        barrier.setTime(m_time);
        wire::append_frame(m_builder.builder(), out);
        return;
    }
    if (m_id) std::memcpy(message.initId(m_id->size()).begin(), m_id->data(), m_id->size());
    message.setTime(m_time);
    message.setIngested(m_ingested);
    // Empty header texts stay unset: smaller, and read back the same.
    if (!m_source.empty()) init_copy([&](unsigned n) { return message.initSource(n); }, m_source);
    if (!m_gateway.empty())
        init_copy([&](unsigned n) { return message.initGateway(n); }, m_gateway);
    if (!m_kind.empty()) init_copy([&](unsigned n) { return message.initKind(n); }, m_kind);

    size_t live = 0;
    for (auto& field : m_fields) live += !field.dropped;
    if (live > 0) {
        auto fields = message.initFields(static_cast<unsigned>(live));
        unsigned k = 0;
        for (auto& pending : m_fields) {
            if (pending.dropped) continue;
            auto field = fields[k++];
            init_copy([&](unsigned n) { return field.initName(n); }, name_of(pending));
            auto value = field.getValue();
            switch (pending.which) {
                case FieldValue::FLOAT:
                    value.setFloat(pending.float_value);
                    break;
                case FieldValue::INT:
                    value.setInt(pending.int_value);
                    break;
                case FieldValue::BOOL:
                    value.setBool(pending.bool_value);
                    break;
                case FieldValue::TEXT:
                    init_copy([&](unsigned n) { return value.initText(n); }, pending.text);
                    break;
                case FieldValue::JSON:
                    init_copy([&](unsigned n) { return value.initJson(n); }, pending.text);
                    break;
            }
        }
    }
    if (!m_body.empty()) init_copy([&](unsigned n) { return message.initBody(n); }, m_body);
    wire::append_frame(m_builder.builder(), out);
}

// ---- JsonEncoder -------------------------------------------------------------------------

struct JsonEncoder::Impl {
    // Dotted field names nest again: a tree of groups and leaves, made in vectors kept
    // across messages.
    struct Node {
        std::string_view key;
        int32_t field;  // leaf: index into the message's fields; group: -1
        int32_t first_child = -1, last_child = -1, next = -1;
    };

    TimeFormat m_time_format;
    od::parser m_parser;   // checks json fields before they are written raw
    std::string m_padded;  // a json field with brackets and padding, for the check
    std::vector<Node> m_nodes;
    std::vector<std::string_view> m_sorted_names;

    void encode(schema::Message::Reader message, std::string& out);
    void append_time(std::string& out, int64_t ns);
    void append_value(std::string& out, FieldValue::Reader value);
    void append_fields(std::string& out, capnp::List<schema::Field>::Reader fields, bool& first);
    void append_children(std::string& out, capnp::List<schema::Field>::Reader fields, int32_t node,
                         bool& first);
    bool nestable(std::string_view name, size_t value_depth) const;
    int32_t add_node(int32_t parent, std::string_view key, int32_t field);
    bool is_valid_json(std::string_view text);
};

JsonEncoder::JsonEncoder(TimeFormat time_format) : m_impl(std::make_unique<Impl>()) {
    m_impl->m_time_format = time_format;
}
JsonEncoder::~JsonEncoder() = default;

void JsonEncoder::encode(schema::Message::Reader message, std::string& out) {
    m_impl->encode(message, out);
}

namespace {
std::string_view view(capnp::Text::Reader text) { return {text.begin(), text.size()}; }

void append_key(std::string& out, std::string_view key, bool& first) {
    if (!first) out.push_back(',');
    first = false;
    out.push_back('"');
    out += key;  // only our own keys, which need no escaping
    out += "\":";
}

template <typename Integer>
void append_integer(std::string& out, Integer value) {
    char buffer[24];
    out.append(buffer, std::to_chars(buffer, buffer + sizeof(buffer), value).ptr);
}
}  // namespace

void JsonEncoder::Impl::append_time(std::string& out, int64_t ns) {
    if (m_time_format == TimeFormat::nanoseconds) {
        append_integer(out, ns);
        return;
    }
    char buffer[k_rfc3339_max_chars + 2];
    buffer[0] = '"';
    char* end = format_rfc3339(ns, buffer + 1);
    *end++ = '"';
    out.append(buffer, end);
}

void JsonEncoder::Impl::encode(schema::Message::Reader message, std::string& out) {
    bool first = true;
    out.push_back('{');
    if (message.getControl().isBarrier()) {
        auto barrier = message.getControl().getBarrier();
        append_key(out, "$barrier", first);
        append_integer(out, barrier.getNumber());
        append_key(out, "time", first);
        append_time(out, barrier.getTime());
        out += "}\n";
        return;
    }
    if (message.hasId()) {
        auto id = message.getId();
        if (id.size() > 0) {
            char buffer[2 * 16 + 4 + 2];
            append_key(out, "id", first);
            if (id.size() == 16) {
                buffer[0] = '"';
                char* end = format_id(std::span<const uint8_t>(id.begin(), id.size()), buffer + 1);
                *end++ = '"';
                out.append(buffer, end);
            } else {
                // Not an mh id: kept as hex digits rather than dropped.
                out.push_back('"');
                for (size_t i = 0; i < id.size(); i += 16) {
                    size_t n = std::min<size_t>(16, id.size() - i);
                    out.append(buffer,
                               format_id(std::span<const uint8_t>(id.begin() + i, n), buffer));
                }
                out.push_back('"');
            }
        }
    }
    if (int64_t time = message.getTime()) {
        append_key(out, "time", first);
        append_time(out, time);
    }
    if (int64_t ingested = message.getIngested()) {
        append_key(out, "ingested", first);
        append_time(out, ingested);
    }
    auto append_text = [&](const char* key, capnp::Text::Reader text) {
        if (text.size() == 0) return;
        append_key(out, key, first);
        json::append_string(out, view(text));
    };
    append_text("source", message.getSource());
    append_text("gateway", message.getGateway());
    append_text("kind", message.getKind());
    if (message.hasFields()) append_fields(out, message.getFields(), first);
    if (message.hasBody()) {
        auto body = message.getBody();
        std::string_view bytes(reinterpret_cast<const char*>(body.begin()), body.size());
        if (!bytes.empty()) {
            append_key(out, "body", first);
            if (is_valid_utf8(bytes)) {
                json::append_string(out, bytes);
            } else {
                out += "{\"base64\":\"";
                json::append_base64(out, std::as_bytes(std::span(body.begin(), body.size())));
                out += "\"}";
            }
        }
    }
    out += "}\n";
}

void JsonEncoder::Impl::append_value(std::string& out, FieldValue::Reader value) {
    switch (value.which()) {
        case FieldValue::FLOAT: {
            double number = value.getFloat();
            if (std::isfinite(number))
                json::append_float(out, number);
            else
                out += "null";
            return;
        }
        case FieldValue::INT:
            append_integer(out, value.getInt());
            return;
        case FieldValue::TEXT:
            json::append_string(out, view(value.getText()));
            return;
        case FieldValue::BOOL:
            out += value.getBool() ? "true" : "false";
            return;
        case FieldValue::JSON: {
            std::string_view text = view(value.getJson());
            if (!is_valid_json(text)) {
                json::append_string(out, text);
                return;
            }
            // Line breaks in valid JSON can only be whitespace between tokens; a JSON line
            // must not have them.
            size_t start = out.size();
            out += text;
            std::replace_if(
                out.begin() + static_cast<std::ptrdiff_t>(start), out.end(),
                [](char c) { return c == '\n' || c == '\r'; }, ' ');
            return;
        }
    }
    out += "null";  // a variant newer than this code
}

bool JsonEncoder::Impl::is_valid_json(std::string_view text) {
    // Fast answers for what the decoder itself produces most.
    if (text == "null" || text == "{}" || text == "[]") return true;
    if (json::is_integer_text(text)) return true;
    // As the single element of an array, any JSON value can be walked the same way.
    m_padded.assign("[");
    m_padded += text;
    m_padded += ']';
    size_t size = m_padded.size();
    m_padded.resize(size + simdjson::SIMDJSON_PADDING);
    od::document document;
    od::array array;
    if (m_parser.iterate(m_padded.data(), size, m_padded.size()).get(document) ||
        document.get_array().get(array))
        return false;
    size_t count = 0;
    for (auto element : array) {
        od::value item;
        if (std::move(element).get(item) || validate_value(item, 2)) return false;
        ++count;
    }
    const char* rest;
    return count == 1 && document.current_location().get(rest) != simdjson::SUCCESS;
}

namespace {
// How deep the brackets of a JSON text go: 0 for a scalar, 1 for [1,2], 2 for [[1]].
size_t json_depth(std::string_view text) {
    size_t depth = 0, deepest = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}
}  // namespace

// Whether a field can go back into nested objects: `value_depth` is how deep its own value
// goes, so that the whole stays within what the decoder accepts.
bool JsonEncoder::Impl::nestable(std::string_view name, size_t value_depth) const {
    size_t segments = 1;
    size_t start = 0;
    for (size_t dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.', start)) {
        if (dot == start) return false;  // an empty segment has no nested form
        if (segments == 1 && is_reserved_key(name.substr(0, dot))) return false;
        // "a.b" cannot nest when there is a field "a" too: it stays a dotted key.
        if (std::binary_search(m_sorted_names.begin(), m_sorted_names.end(), name.substr(0, dot)))
            return false;
        ++segments;
        start = dot + 1;
    }
    return start < name.size() && segments + value_depth <= k_max_json_depth;
}

int32_t JsonEncoder::Impl::add_node(int32_t parent, std::string_view key, int32_t field) {
    auto index = static_cast<int32_t>(m_nodes.size());
    m_nodes.push_back(Node{key, field});
    Node& owner = m_nodes[static_cast<size_t>(parent)];
    if (owner.last_child < 0)
        owner.first_child = index;
    else
        m_nodes[static_cast<size_t>(owner.last_child)].next = index;
    owner.last_child = index;
    return index;
}

void JsonEncoder::Impl::append_fields(std::string& out, capnp::List<schema::Field>::Reader fields,
                                      bool& first) {
    bool dotted = false;
    for (auto field : fields) {
        auto name = field.getName();
        if (std::memchr(name.begin(), '.', name.size())) {
            dotted = true;
            break;
        }
    }
    if (!dotted) {
        for (auto field : fields) {
            if (!first) out.push_back(',');
            first = false;
            json::append_string(out, view(field.getName()));
            out.push_back(':');
            append_value(out, field.getValue());
        }
        return;
    }

    m_sorted_names.clear();
    for (auto field : fields) m_sorted_names.push_back(view(field.getName()));
    std::sort(m_sorted_names.begin(), m_sorted_names.end());
    m_nodes.clear();
    m_nodes.push_back(Node{{}, -1});  // the root: the message object itself
    for (unsigned i = 0; i < fields.size(); ++i) {
        std::string_view name = view(fields[i].getName());
        auto value = fields[i].getValue();
        size_t value_depth = value.isJson() ? json_depth(view(value.getJson())) : 0;
        if (!nestable(name, value_depth)) {
            add_node(0, name, static_cast<int32_t>(i));
            continue;
        }
        // Groups in the order their first field appears.
        int32_t parent = 0;
        size_t start = 0;
        for (size_t dot = name.find('.'); dot != std::string_view::npos;
             dot = name.find('.', start)) {
            std::string_view segment = name.substr(start, dot - start);
            int32_t child = m_nodes[static_cast<size_t>(parent)].first_child;
            while (child >= 0 && !(m_nodes[static_cast<size_t>(child)].field < 0 &&
                                   m_nodes[static_cast<size_t>(child)].key == segment))
                child = m_nodes[static_cast<size_t>(child)].next;
            parent = child >= 0 ? child : add_node(parent, segment, -1);
            start = dot + 1;
        }
        add_node(parent, name.substr(start), static_cast<int32_t>(i));
    }
    append_children(out, fields, 0, first);
}

void JsonEncoder::Impl::append_children(std::string& out, capnp::List<schema::Field>::Reader fields,
                                        int32_t node, bool& first) {
    for (int32_t child = m_nodes[static_cast<size_t>(node)].first_child; child >= 0;
         child = m_nodes[static_cast<size_t>(child)].next) {
        const Node& entry = m_nodes[static_cast<size_t>(child)];
        if (!first) out.push_back(',');
        first = false;
        json::append_string(out, entry.key);
        out.push_back(':');
        if (entry.field >= 0) {
            append_value(out, fields[static_cast<unsigned>(entry.field)].getValue());
        } else {
            bool first_inner = true;
            out.push_back('{');
            append_children(out, fields, child, first_inner);
            out.push_back('}');
        }
    }
}

// ---- JsonLineSource ----------------------------------------------------------------------

JsonLineSource::JsonLineSource(int fd, const StopFlag* stop, Log& log, Strict strict,
                               wire::FrameLimits limits)
    : m_reader(fd, stop, limits.max_frame_bytes), m_log(log), m_strict(strict), m_limits(limits) {}

wire::Next JsonLineSource::next(wire::Wait wait, wire::Frame& frame) {
    for (;;) {
        std::string_view line;
        wire::Next next = m_reader.next(wait, line);
        if (next != wire::Next::frame) return next;

        std::optional<std::string> reason;
        m_frame.clear();
        if (m_reader.oversized()) {
            reason = fmt::format("longer than the limit of {} bytes", m_reader.max_line_bytes());
        } else {
            if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
            reason = m_decoder.decode(line, m_frame, Padding::present);
            if (!reason && m_frame.size() > m_limits.max_frame_bytes)
                reason = fmt::format("message of {} bytes is over the frame limit of {} bytes",
                                     m_frame.size(), m_limits.max_frame_bytes);
        }
        if (reason) {
            ++m_rejected;
            if (m_strict == Strict::yes) {
                m_error = fmt::format("line {}: {}", m_reader.line_number(), *reason);
                return wire::Next::broken;
            }
            m_log.warn("line {}: {}", m_reader.line_number(), *reason);
            continue;
        }
        // operator new aligns at least as strictly as a Cap'n Proto word.
        frame.words = reinterpret_cast<const capnp::word*>(m_frame.data());
        frame.word_count = m_frame.size() / sizeof(capnp::word);
        return wire::Next::frame;
    }
}

// ---- JsonSink ----------------------------------------------------------------------------

JsonSink::JsonSink(int fd, TimeFormat time_format, wire::FrameLimits limits)
    : m_output(fd), m_encoder(time_format), m_opener(limits) {}

void JsonSink::write(const wire::Frame& frame) {
    m_line.clear();
    if (auto reason = m_opener.open(frame)) {
        ++m_rejected;
        m_last_error = std::move(*reason);
        return;
    }
    try {
        m_encoder.encode(m_opener.message(), m_line);
    } catch (const kj::Exception& e) {
        ++m_rejected;
        m_last_error = e.getDescription().cStr();
        return;
    }
    m_output.append(m_line);
}

}  // namespace mh
