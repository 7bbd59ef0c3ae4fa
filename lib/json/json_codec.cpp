#include "json/json_codec.h"

#include "message/id.h"
#include "message/scratch_builder.h"
#include "message/time.h"
#include "wire/message_view.h"

#include <capnp/serialize.h>
#include <fmt/format.h>
#include <kj/exception.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// The eight decimal digits of `value` (< 10^8, leading zeros kept) as the bytes of one
// word, each 0 to 9, the first digit lowest: the halves, then their pairs, then their
// digits, each split by multiplying by a reciprocal in lanes of one word.
inline uint64_t split_8_digits(uint64_t value) {
    uint64_t halves = value / 10000 | (value % 10000) << 32;          // 32-bit lanes, < 10^4
    uint64_t hundreds = ((halves * 5243) >> 19) & 0x0000007F0000007F;  // lane / 100
    uint64_t pairs = hundreds | (halves - hundreds * 100) << 16;       // 16-bit lanes, < 100
    uint64_t tens = ((pairs * 103) >> 10) & 0x000F000F000F000F;        // lane / 10
    return tens | (pairs - tens * 10) << 8;                            // bytes, < 10
}

// The same digits as text at `p`, all at once.
inline void write_8_digits(char* p, uint64_t value) {
    uint64_t digits = split_8_digits(value) + 0x3030303030303030;
    std::memcpy(p, &digits, 8);
}

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

namespace {
constexpr double k_float_powers_of_ten[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};

// What fmt's shortest "{}" gives, for the values sensors mostly send: zero, and magnitudes
// from 0.001 to 10^15 with at most 8 digits after the point and 15 in all, which fmt
// writes in fixed notation. The fewest fraction digits k whose decimal reads back as the
// same double is the shortest form, and the only one of that length: within 15 digits,
// neighbouring decimals are several ulps apart. m / 10^k with both exact is one correctly
// rounded division, which is what reading the decimal back gives. False: fmt's turn.
// Writes at `out` (room for 32 chars) and returns the end, or null when fmt must decide.
char* write_short_float(char* out, double value) {
    char* p = out;
    if (std::signbit(value)) *p++ = '-';
    double magnitude = std::fabs(value);
    if (magnitude == 0) {
        std::memcpy(p, "0.0", 3);
        return p + 3;
    }
    if (!(magnitude >= 1e-3 && magnitude < 1e15)) return nullptr;  // NaN too
    for (size_t k = 0; k < std::size(k_float_powers_of_ten); ++k) {
        double scaled = magnitude * k_float_powers_of_ten[k];
        if (scaled >= 1e15) return nullptr;
        // The nearest integer: when k digits fit, scaled is within 0.25 of it (the product
        // errs by far less than that below 10^15); a wrong candidate fails the check anyway.
        auto digits = static_cast<uint64_t>(static_cast<int64_t>(scaled + 0.5));
        if (static_cast<double>(static_cast<int64_t>(digits)) / k_float_powers_of_ten[k] != magnitude)
            continue;
        // A trailing zero would mean a shorter form was missed: fmt decides.
        if (k > 0 && digits % 10 == 0) return nullptr;
        if (digits < 100000000) {
            // All digits as the bytes of one word, the first lowest; the whole part (or a
            // '0') and the k fraction digits shifted down from it and stored eight bytes at
            // a time, the room allowing it, the point written over the first byte too many.
            uint64_t split = split_8_digits(digits);
            uint64_t chars = split + 0x3030303030303030;
            // Leading zero digits are the low zero bytes of `split` (digits > 0).
            size_t length = 8 - static_cast<size_t>(std::countr_zero(split)) / 8;
            uint64_t whole_chars = length > k ? chars >> (8 * (8 - length)) : uint64_t{'0'};
            std::memcpy(p, &whole_chars, 8);
            p += length > k ? length - k : 1;
            *p++ = '.';
            if (k == 0) {
                *p++ = '0';
                return p;
            }
            uint64_t fraction_chars = chars >> (8 * (8 - k));
            std::memcpy(p, &fraction_chars, 8);
            return p + k;
        }
        auto unit = static_cast<uint64_t>(k_float_powers_of_ten[k]);
        p = std::to_chars(p, out + 32, digits / unit).ptr;
        *p++ = '.';
        if (k == 0) {
            *p++ = '0';
        } else {
            uint64_t fraction = digits % unit;
            for (size_t i = k; i-- > 0; fraction /= 10) p[i] = static_cast<char>('0' + fraction % 10);
            p += k;
        }
        return p;
    }
    return nullptr;
}
}  // namespace

char* write_float(char* out, double value) {
    if (char* end = write_short_float(out, value)) return end;
    char* end = fmt::format_to(out, "{}", value);
    // "21" would read back as an integer.
    if (std::find_if(out, end, [](char c) { return c == '.' || c == 'e' || c == 'n'; }) == end) {
        std::memcpy(end, ".0", 2);
        end += 2;
    }
    return end;
}

void append_float(std::string& out, double value) {
    char buffer[k_float_chars];
    out.append(buffer, static_cast<size_t>(write_float(buffer, value) - buffer));
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

    DecodePath m_path = DecodePath::fast;
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
    std::optional<std::string> parse(std::string_view line, Padding padding);
    void to_view(wire::MessageView& view) const;
    void reset();
    bool flat_decode(const char* text, size_t size);
    bool flat_members(const char*& p, const char* end, size_t depth);
    bool flat_string(const char*& p, const char* end, std::string_view& text);
    bool flat_top(std::string_view key, TopKey which, const char*& p, const char* end);
    bool flat_field(std::string_view key, const char*& p, const char* end, size_t depth);
    bool m_non_ascii = false;  // the flat scanner met bytes that UTF-8 validation must see
#if defined(__SSE2__)
    // The keys of the last lines, by their place in the line: lines of one stream mostly
    // repeat them, and a key that matches (with its closing quote) needs no scan.
    struct CachedKey {
        __m128i bytes;     // the key and its quote, zero after
        uint32_t mask = 0;  // the bytes that must match; 0: no key here
        uint32_t size = 0;
        TopKey top = TopKey::field;
    };
    static constexpr size_t k_cached_keys = 64;
    std::array<CachedKey, k_cached_keys> m_keys{};
    size_t m_key_index = 0;
#endif
    bool flat_key(const char*& p, const char* end, std::string_view& key, TopKey& top);
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
    // Marks each duplicate dropped but the first, which takes the last one's value; says
    // whether there was any.
    bool drop_duplicates();
    // Lines of one stream mostly have the same keys: a line whose keys are those of the last
    // line (every one found in the key cache, in that place), both without nested objects,
    // has that line's duplicates, and when it had none there is nothing to look for.
    static constexpr size_t k_not_clean = SIZE_MAX;
    size_t m_clean_keys = k_not_clean;  // the last line's key count, when it had no duplicate
    bool m_keys_all_cached = false;     // this line's keys so far were all found in the cache
    bool m_nested = false;              // this line has a nested object with members
    void build(std::vector<std::byte>& out);
    bool build_direct(std::vector<std::byte>& out);
};

JsonDecoder::JsonDecoder(DecodePath path) : m_impl(std::make_unique<Impl>()) {
    m_impl->m_path = path;
}
JsonDecoder::~JsonDecoder() = default;

std::optional<std::string> JsonDecoder::decode(std::string_view line, std::vector<std::byte>& out,
                                               Padding padding) {
    return m_impl->decode(line, out, padding);
}

std::optional<std::string> JsonDecoder::decode_view(std::string_view line, wire::MessageView& view,
                                                    Padding padding) {
    if (auto reason = m_impl->parse(line, padding)) return reason;
    m_impl->to_view(view);
    return std::nullopt;
}

std::optional<std::string> JsonDecoder::Impl::decode(std::string_view line,
                                                     std::vector<std::byte>& out, Padding padding) {
    if (auto reason = parse(line, padding)) return reason;
    build(out);
    return std::nullopt;
}

void JsonDecoder::Impl::to_view(wire::MessageView& view) const {
    view.fields.clear();
    view.barrier = m_barrier.has_value();
    view.barrier_number = m_barrier.value_or(0);
    view.time = m_time;
    view.ingested = m_ingested;
    view.id = m_id ? std::string_view(reinterpret_cast<const char*>(m_id->data()), m_id->size())
                   : std::string_view();
    view.source = m_source;
    view.gateway = m_gateway;
    view.kind = m_kind;
    view.body = m_body;
    if (m_barrier) return;
    for (const PendingField& field : m_fields) {
        if (field.dropped) continue;
        view.fields.push_back({name_of(field), field.which, field.float_value, field.int_value, field.bool_value,
                               field.text});
    }
}

// Reads the line into the header and the pending fields, duplicates dropped.
std::optional<std::string> JsonDecoder::Impl::parse(std::string_view line, Padding padding) {
    const char* text = line.data();
    size_t capacity = line.size() + simdjson::SIMDJSON_PADDING;
    if (padding == Padding::absent) {
        m_copy.assign(line);
        m_copy.resize(capacity);
        text = m_copy.data();
    }
    size_t clean_keys = m_clean_keys;
    m_clean_keys = k_not_clean;
    if (m_path == DecodePath::fast && flat_decode(text, line.size())) {
#if defined(__SSE2__)
        bool same_shape = m_keys_all_cached && !m_nested;
        if (same_shape && m_key_index == clean_keys) {
            m_clean_keys = clean_keys;  // the keys of a line without duplicates
        } else if (!drop_duplicates() && same_shape) {
            m_clean_keys = m_key_index;
        }
#else
        (void)clean_keys;
        drop_duplicates();
#endif
        return std::nullopt;
    }
    if (dom_decode(text, line.size())) {
        drop_duplicates();
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

// ---- The flat fast path -------------------------------------------------------------------
//
// Most lines are one object of plain scalars, as mh-cat and mh-gen write them. This scanner
// reads exactly those in one pass and takes strings where they lie in the line; it gives up
// (false) at the first thing it does not read exactly as the DOM path would: an escape, an
// array, a number it cannot convert exactly, any syntax error. The DOM path then reads the
// line from the start, so that what it accepts and every refusal stay as they were.

namespace {

inline const char* skip_space(const char* p, const char* end) {
    // Mostly there is no space at all: one test. The text is followed by padding, so *p is
    // readable at `end` too, and returning p there is what the loop would do.
    if (static_cast<unsigned char>(*p) > ' ') return p;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
    return p;
}

constexpr double k_exact_powers_of_ten[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                            1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// A number as JSON's grammar has it, read as the DOM parser reads it: an integer within
// int64 (except "-0" and -2^63, left to the DOM path), or a float, exactly rounded. False for
// anything else, with `p` wherever it stopped.
struct FlatNumber {
    bool is_float;
    int64_t int_value;
    double float_value;
};

inline bool is_digit(char c) { return static_cast<unsigned char>(c - '0') < 10; }

// Appends the digits at `p` to `value`, eight at a time where eight are there (the text is
// followed by padding, so the load is readable; only digits before `end` are taken).
inline const char* read_digits(const char* p, const char* end, uint64_t& value) {
    while (end - p >= 8) {
        uint64_t chunk;
        std::memcpy(&chunk, p, 8);
        // All eight are digits: each byte is 0x30..0x39.
        if (((chunk & 0xF0F0F0F0F0F0F0F0) | (((chunk + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4)) !=
            0x3333333333333333)
            break;
        chunk -= 0x3030303030303030;
        chunk = chunk * 10 + (chunk >> 8);  // pairs
        chunk = (((chunk & 0x000000FF000000FF) * (100 + (1000000ULL << 32))) +
                 (((chunk >> 16) & 0x000000FF000000FF) * (1 + (10000ULL << 32)))) >>
                32;
        value = value * 100000000 + chunk;
        p += 8;
    }
    while (p < end && is_digit(*p)) value = value * 10 + static_cast<unsigned>(*p++ - '0');
    return p;
}

bool flat_number(const char*& p, const char* end, FlatNumber& number) {
    const char* start = p;
    bool negative = *p == '-';
    if (negative) ++p;
    if (p == end) return false;
    uint64_t mantissa = 0;
    const char* digits = p;
    if (*p == '0') {
        ++p;
    } else if (is_digit(*p)) {
        p = read_digits(p, end, mantissa);
    } else {
        return false;
    }
    size_t int_digits = static_cast<size_t>(p - digits);
    size_t frac_digits = 0;
    bool is_float = false;
    if (p < end && *p == '.') {
        is_float = true;
        const char* fraction = ++p;
        p = read_digits(p, end, mantissa);
        frac_digits = static_cast<size_t>(p - fraction);
        if (frac_digits == 0) return false;
    }
    int64_t exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_float = true;
        ++p;
        bool negative_exponent = p < end && *p == '-';
        if (p < end && (*p == '-' || *p == '+')) ++p;
        if (p == end || !is_digit(*p)) return false;
        while (p < end && is_digit(*p)) {
            if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
            ++p;
        }
        if (negative_exponent) exponent = -exponent;
    }
    number.is_float = is_float;
    if (!is_float) {
        // 19 digits cannot overflow the accumulator; int64 holds them up to 2^63 - 1.
        if (int_digits > 19 || mantissa > static_cast<uint64_t>(INT64_MAX)) return false;
        if (negative && mantissa == 0) return false;
        number.int_value = negative ? -static_cast<int64_t>(mantissa) : static_cast<int64_t>(mantissa);
        return true;
    }
    size_t total_digits = int_digits + frac_digits;
    int64_t exponent10 = exponent - static_cast<int64_t>(frac_digits);
    double value;
    if (total_digits <= 15 && exponent10 >= -22 && exponent10 <= 22) {
        // Clinger's fast path: both operands are exact, so one rounding gives the nearest
        // double, which is what any exact parser gives.
        value = static_cast<double>(mantissa);
        if (exponent10 < 0)
            value /= k_exact_powers_of_ten[-exponent10];
        else
            value *= k_exact_powers_of_ten[exponent10];
    } else {
        auto [stop, error] = std::from_chars(negative ? start + 1 : start, p, value);
        if (error != std::errc() || stop != p || !std::isfinite(value)) return false;
        // Underflow is where parsers may differ: left to the DOM path.
        if (value == 0 && (mantissa != 0 || total_digits > 19)) return false;
    }
    // "-0.0": the DOM path leaves it to the on-demand path, and so does this one.
    if (negative && value == 0) return false;
    number.float_value = negative ? -value : value;
    return true;
}

}  // namespace

bool JsonDecoder::Impl::flat_string(const char*& p, const char* end, std::string_view& text) {
    const char* start = p;
    for (;;) {
        // Up to the next special byte (k_special): the quote, an escape, controls (invalid
        // in JSON), and non-ASCII bytes, valid only as UTF-8, which is checked once per line.
#if defined(__SSE2__)
        // 16 bytes at a time: the text is followed by padding, so a load past `end` is
        // readable, and what it finds there is not taken.
        for (;;) {
            __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            __m128i stop = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(chunk, _mm_set1_epi8('"')),
                             _mm_cmpeq_epi8(chunk, _mm_set1_epi8('\\'))),
                _mm_cmpeq_epi8(_mm_min_epu8(chunk, _mm_set1_epi8(0x1F)), chunk));
            // The sign bits are the non-ASCII bytes.
            auto mask = static_cast<unsigned>(_mm_movemask_epi8(stop) | _mm_movemask_epi8(chunk));
            if (mask != 0) {
                p += __builtin_ctz(mask);
                break;
            }
            p += 16;
            if (p >= end) break;
        }
        if (p >= end) return false;
#else
        while (p < end && !k_special[static_cast<unsigned char>(*p)]) ++p;
        if (p == end) return false;
#endif
        auto c = static_cast<unsigned char>(*p);
        if (c == '"') break;
        if (c < 0x80) return false;  // an escape or a control
        m_non_ascii = true;
        ++p;
    }
    text = {start, static_cast<size_t>(p - start)};
    ++p;
    return true;
}

// A key, `p` just past its opening quote: as flat_string reads it, or at once when it is
// the key the last line had in this place. A cached key holds no special byte (it was read
// by flat_string and is ASCII), so a match is exactly what flat_string would find.
// `top` says which header key it is, if any (kept with the cached key too).
bool JsonDecoder::Impl::flat_key(const char*& p, const char* end, std::string_view& key,
                                 TopKey& top) {
#if defined(__SSE2__)
    size_t index = m_key_index++;
    if (index < k_cached_keys) {
        CachedKey& cached = m_keys[index];
        __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));  // padding
        auto equal = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, cached.bytes)));
        if (cached.mask != 0 && (equal & cached.mask) == cached.mask &&
            static_cast<size_t>(end - p) > cached.size) {
            key = {p, cached.size};
            top = cached.top;
            p += cached.size + 1;
            return true;
        }
        m_keys_all_cached = false;
        const char* start = p;
        bool non_ascii = m_non_ascii;
        m_non_ascii = false;
        if (!flat_string(p, end, key)) return false;
        top = top_key(key);
        cached.top = top;
        if (key.size() < 16 && !m_non_ascii) {
            alignas(16) char bytes[16] = {};
            std::memcpy(bytes, start, key.size() + 1);  // with its quote
            cached.bytes = _mm_load_si128(reinterpret_cast<const __m128i*>(bytes));
            cached.mask = (1u << (key.size() + 1)) - 1;
            cached.size = static_cast<uint32_t>(key.size());
        } else {
            cached.mask = 0;
        }
        m_non_ascii = m_non_ascii || non_ascii;
        return true;
    }
    m_keys_all_cached = false;
#endif
    if (!flat_string(p, end, key)) return false;
    top = top_key(key);
    return true;
}

bool JsonDecoder::Impl::flat_decode(const char* text, size_t size) {
    reset();
    m_non_ascii = false;
    m_nested = false;
#if defined(__SSE2__)
    m_key_index = 0;
    m_keys_all_cached = true;
#endif
    const char* end = text + size;
    const char* p = skip_space(text, end);
    if (p == end || *p != '{') return false;
    ++p;
    if (!flat_members(p, end, 0)) return false;
    if (skip_space(p, end) != end) return false;
    if (m_non_ascii && !is_valid_utf8(std::string_view(text, size))) return false;
    return !(m_barrier && !m_non_barrier_key.empty());
}

// The members of an object, `p` just past its '{'; depth 0 is the line's own object.
bool JsonDecoder::Impl::flat_members(const char*& p, const char* end, size_t depth) {
    p = skip_space(p, end);
    if (p < end && *p == '}') {
        ++p;
        return true;
    }
    for (;;) {
        if (p == end || *p != '"') return false;
        std::string_view key;
        TopKey top;
        ++p;
        if (!flat_key(p, end, key, top)) return false;
        p = skip_space(p, end);
        if (p == end || *p != ':') return false;
        p = skip_space(p + 1, end);
        if (p == end) return false;
        if (!(depth == 0 ? flat_top(key, top, p, end) : flat_field(key, p, end, depth)))
            return false;
        p = skip_space(p, end);
        if (p == end) return false;
        if (*p == '}') {
            ++p;
            return true;
        }
        if (*p != ',') return false;
        p = skip_space(p + 1, end);
    }
}

// A header key's value, as dom_top reads it; `p` is at the value and is left after it.
bool JsonDecoder::Impl::flat_top(std::string_view key, TopKey which, const char*& p,
                                 const char* end) {
    if (which == TopKey::field) {
        m_non_barrier_key = key;
        return flat_field(key, p, end, 1);
    }
    auto is_null = [&] {
        if (end - p >= 4 && std::memcmp(p, "null", 4) == 0) {
            p += 4;
            return true;
        }
        return false;
    };
    auto string = [&](std::string_view& out) {
        if (*p != '"') return false;
        ++p;
        return flat_string(p, end, out);
    };
    auto time = [&](int64_t& ns) {
        if (is_null()) {
            ns = 0;
            return true;
        }
        if (*p == '"') {
            std::string_view text;
            if (!string(text)) return false;
            auto parsed = json::parse_time_text(text);
            if (!parsed) return false;
            ns = *parsed;
            return true;
        }
        FlatNumber number;
        if (!flat_number(p, end, number) || number.is_float) return false;
        ns = number.int_value;
        return true;
    };
    auto text = [&](std::string_view& out) {
        if (is_null()) {
            out = {};
            return true;
        }
        return string(out);
    };
    if (which == TopKey::time) return time(m_time);
    if (which == TopKey::barrier) {
        FlatNumber number;
        if (!flat_number(p, end, number) || number.is_float || number.int_value <= 0) return false;
        m_barrier = static_cast<uint64_t>(number.int_value);
        return true;
    }
    m_non_barrier_key = key;
    switch (which) {
        case TopKey::id: {
            if (is_null()) {
                m_id.reset();
                return true;
            }
            std::string_view id;
            return string(id) && (m_id = parse_id(id));
        }
        case TopKey::ingested: return time(m_ingested);
        case TopKey::source: return text(m_source);
        case TopKey::gateway: return text(m_gateway);
        case TopKey::kind: return text(m_kind);
        case TopKey::body: return text(m_body);  // base64 objects are the DOM path's
        default: return false;
    }
}

// A field's value, as dom_field reads it.
bool JsonDecoder::Impl::flat_field(std::string_view key, const char*& p, const char* end,
                                   size_t depth) {
    PendingField* field;
    auto literal = [&](std::string_view word) {
        if (static_cast<size_t>(end - p) < word.size() ||
            std::memcmp(p, word.data(), word.size()) != 0)
            return false;
        p += word.size();
        return true;
    };
    switch (*p) {
        case '"': {
            std::string_view text;
            ++p;
            if (!flat_string(p, end, text) || !(field = new_field(key, FieldValue::TEXT)))
                return false;
            field->text = text;
            return true;
        }
        case 't':
        case 'f': {
            bool value = *p == 't';
            if (!literal(value ? "true" : "false") || !(field = new_field(key, FieldValue::BOOL)))
                return false;
            field->bool_value = value;
            return true;
        }
        case 'n':
            if (!literal("null") || !(field = new_field(key, FieldValue::JSON))) return false;
            field->text = "null";
            return true;
        case '{': {
            if (depth + 1 > k_max_json_depth) return false;
            p = skip_space(p + 1, end);
            if (p < end && *p == '}') {
                ++p;
                if (!(field = new_field(key, FieldValue::JSON))) return false;
                field->text = "{}";
                return true;
            }
            m_nested = true;
            size_t prefix_size = m_prefix.size();
            m_prefix += key;
            m_prefix += '.';
            if (!flat_members(p, end, depth + 1)) return false;
            m_prefix.resize(prefix_size);
            return true;
        }
        default: {
            FlatNumber number;
            if (!flat_number(p, end, number)) return false;
            if (number.is_float) {
                if (!(field = new_field(key, FieldValue::FLOAT))) return false;
                field->float_value = number.float_value;
            } else {
                if (!(field = new_field(key, FieldValue::INT))) return false;
                field->int_value = number.int_value;
            }
            return true;
        }
    }
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

bool JsonDecoder::Impl::drop_duplicates() {
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
    bool any = false;
    if (count <= k_pairwise_fields) {
        for (size_t i = 1; i < count; ++i) {
            for (size_t j = 0; j < i; ++j) {
                if (!m_fields[j].dropped && same_name(m_fields[j], m_fields[i])) {
                    take(m_fields[j], m_fields[i]);
                    m_fields[i].dropped = true;
                    any = true;
                    break;
                }
            }
        }
        return any;
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
            any = true;
        }
        run = last + 1;
    }
    return any;
}

namespace {
// Copies into a Text or Data made by `init(size)` (initSource, initName, initBody, ...).
template <typename Init>
void init_copy(Init init, std::string_view bytes) {
    auto builder = init(static_cast<unsigned>(bytes.size()));
    if (!bytes.empty()) std::memcpy(builder.begin(), bytes.data(), bytes.size());
}
}  // namespace

// ---- Frames written directly ------------------------------------------------------------
//
// Cap'n Proto's builder costs more per message than the scan: a builder made and unmade,
// every object zeroed, checked and copied twice. build_direct() writes the very bytes that
// build() gets from MallocMessageBuilder on its 64 KiB first segment and append_frame():
// the segment table, the root pointer, the root struct, then each object in the order build()
// makes them, each right after the one before (Cap'n Proto's builder allocates so in a
// segment that has room). A message that would not fit that segment goes through build().

namespace {

using namespace wire::layout;


}  // namespace

bool JsonDecoder::Impl::build_direct(std::vector<std::byte>& out) {
    size_t live = 0;
    uint64_t words = 1 + k_message_data_words + k_message_pointers;
    if (m_barrier) {
        words += k_barrier_data_words;
    } else {
        if (m_id) words += data_words(m_id->size());
        for (auto text : {m_source, m_gateway, m_kind})
            if (!text.empty()) words += text_words(text.size());
        for (auto& field : m_fields) {
            if (field.dropped) continue;
            ++live;
            words += text_words(field.name_size);
            if (field.which == FieldValue::TEXT || field.which == FieldValue::JSON)
                words += text_words(field.text.size());
        }
        if (live > 0) words += 1 + live * (k_field_data_words + k_field_pointers);
        if (!m_body.empty()) words += data_words(m_body.size());
    }
    if (words > k_scratch_words) return false;

    // The segment table of one segment: its count less one (0), then its size in words.
    size_t start = out.size();
    out.resize(start + 8 + words * 8);  // zeroed, as a fresh segment is
    std::memcpy(out.data() + start + 4, &words, 4);
    SegmentWriter segment(out.data() + start + 8);
    uint64_t root = segment.allocate(1);
    uint64_t message = segment.allocate(k_message_data_words + k_message_pointers);
    segment.struct_pointer(root, message, k_message_data_words, k_message_pointers);
    uint64_t pointers = message + k_message_data_words;
    if (m_barrier) {
        uint64_t barrier = segment.allocate(k_barrier_data_words);
        segment.tag(message, k_control_byte, schema::Message::Control::BARRIER);
        segment.struct_pointer(pointers + k_barrier, barrier, k_barrier_data_words, 0);
        segment.word(barrier, *m_barrier);
        segment.word(barrier + 1, static_cast<uint64_t>(m_time));
        return true;
    }
    if (m_id)
        segment.bytes(pointers + k_id,
                      std::string_view(reinterpret_cast<const char*>(m_id->data()), m_id->size()),
                      false);
    segment.word(message, static_cast<uint64_t>(m_time));
    segment.word(message + 1, static_cast<uint64_t>(m_ingested));
    if (!m_source.empty()) segment.bytes(pointers + k_source, m_source, true);
    if (!m_gateway.empty()) segment.bytes(pointers + k_gateway, m_gateway, true);
    if (!m_kind.empty()) segment.bytes(pointers + k_kind, m_kind, true);
    if (live > 0) {
        constexpr uint64_t k_field_words = k_field_data_words + k_field_pointers;
        uint64_t list = segment.allocate(1 + live * k_field_words);
        segment.list_pointer(pointers + k_fields, list, k_composite_elements, live * k_field_words);
        // The tag word: shaped like a struct pointer whose offset is the element count.
        segment.word(list, live << 2 | k_field_data_words << 32 | k_field_pointers << 48);
        uint64_t element = list + 1;
        for (auto& pending : m_fields) {
            if (pending.dropped) continue;
            uint64_t name = element + k_field_data_words;
            segment.bytes(name, name_of(pending), true);
            segment.tag(element, k_field_tag_byte, static_cast<uint16_t>(pending.which));
            switch (pending.which) {
                case FieldValue::FLOAT: {
                    uint64_t bits;
                    std::memcpy(&bits, &pending.float_value, 8);
                    segment.word(element, bits);
                    break;
                }
                case FieldValue::INT:
                    segment.word(element, static_cast<uint64_t>(pending.int_value));
                    break;
                case FieldValue::BOOL:
                    segment.word(element, pending.bool_value ? 1 : 0);
                    break;
                case FieldValue::TEXT:
                case FieldValue::JSON:
                    segment.bytes(name + 1, pending.text, true);
                    break;
            }
            element += k_field_words;
        }
    }
    if (!m_body.empty()) segment.bytes(pointers + k_body, m_body, false);
    return true;
}

void JsonDecoder::Impl::build(std::vector<std::byte>& out) {
    if (m_path == DecodePath::fast && build_direct(out)) return;
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
    // A message as the encoder reads it: from a Cap'n Proto reader, or straight from the
    // words of a frame in mh's own layout.
    using Field = wire::FieldView;
    using Flat = wire::MessageView;

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
    Flat m_flat;

    void read(schema::Message::Reader message, Flat& flat);
    void encode(const Flat& message, std::string& out);
    void append_time(std::string& out, int64_t ns);
    void append_value(std::string& out, const Field& field);
    void append_fields(std::string& out, const std::vector<Field>& fields, bool& first);
    void append_children(std::string& out, const std::vector<Field>& fields, int32_t node,
                         bool& first);
    bool nestable(std::string_view name, size_t value_depth) const;
    int32_t add_node(int32_t parent, std::string_view key, int32_t field);
    bool is_valid_json(std::string_view text);

    // encode() for the common message, written in one piece: see encode_plain().
    template <typename Out>
    bool encode_plain(const Flat& message, Out& out);
    std::string m_line;  // encode()'s line, for a byte buffer
    char* write_time(char* p, int64_t ns) const;
};

JsonEncoder::JsonEncoder(TimeFormat time_format) : m_impl(std::make_unique<Impl>()) {
    m_impl->m_time_format = time_format;
}
JsonEncoder::~JsonEncoder() = default;

void JsonEncoder::encode(schema::Message::Reader message, std::string& out) {
    m_impl->read(message, m_impl->m_flat);
    m_impl->encode(m_impl->m_flat, out);
}

bool JsonEncoder::encode_frame(const wire::Frame& frame, std::string& out) {
    if (!wire::read_message_view(frame, &m_impl->m_flat)) return false;
    // The reader's way (encode(message)) keeps the general writer alone: the fuzzer checks
    // that this one writes what that one writes.
    if (!m_impl->encode_plain(m_impl->m_flat, out)) m_impl->encode(m_impl->m_flat, out);
    return true;
}

bool JsonEncoder::encode_frame(const wire::Frame& frame, std::vector<std::byte>& out) {
    if (!wire::read_message_view(frame, &m_impl->m_flat)) return false;
    if (!m_impl->encode_plain(m_impl->m_flat, out)) {
        m_impl->m_line.clear();
        m_impl->encode(m_impl->m_flat, m_impl->m_line);
        auto* line = reinterpret_cast<const std::byte*>(m_impl->m_line.data());
        out.insert(out.end(), line, line + m_impl->m_line.size());
    }
    return true;
}

namespace {
// Whether any of the eight bytes in `word` needs escaping in a JSON string (a control, a
// quote, a backslash, non-ASCII) or, with `dots`, is a '.': each test is the classic
// "has a byte below n / equal to c" on the whole word, exact as a yes or no (a borrow
// marks a byte wrongly only above a byte that is marked rightly).
inline bool has_special_byte(uint64_t word, bool dots) {
    constexpr uint64_t k_ones = 0x0101010101010101, k_highs = 0x8080808080808080;
    auto has_zero = [](uint64_t v) { return (v - k_ones) & ~v; };
    uint64_t marks = word | ((word - k_ones * 0x20) & ~word) | has_zero(word ^ (k_ones * '"')) |
                     has_zero(word ^ (k_ones * '\\'));
    if (dots) marks |= has_zero(word ^ (k_ones * '.'));
    return (marks & k_highs) != 0;
}

// `text` in quotes when it needs no escaping (ASCII without quotes, backslashes or
// controls, as source, gateway, kind and field names mostly are), and with `dots` no '.'
// either (a dotted name nests: encode() writes it). Null when it needs more. Checked and
// copied eight bytes at a time, the last eight overlapping (four for 4 to 7 bytes); never
// a byte read or written outside the text and its place.
[[gnu::always_inline]] inline char* write_plain_text(char* p, std::string_view text, bool dots) {
    const char* s = text.data();
    size_t size = text.size();
    *p++ = '"';
    if (size >= 8) {
        uint64_t word;
        for (size_t i = 0; i + 8 < size; i += 8) {
            std::memcpy(&word, s + i, 8);
            if (has_special_byte(word, dots)) return nullptr;
            std::memcpy(p + i, &word, 8);
        }
        std::memcpy(&word, s + size - 8, 8);
        if (has_special_byte(word, dots)) return nullptr;
        std::memcpy(p + size - 8, &word, 8);
    } else if (size >= 4) {
        uint32_t head, tail;
        std::memcpy(&head, s, 4);
        std::memcpy(&tail, s + size - 4, 4);
        if (has_special_byte(head | uint64_t{tail} << 32, dots)) return nullptr;
        std::memcpy(p, &head, 4);
        std::memcpy(p + size - 4, &tail, 4);
    } else {
        for (size_t i = 0; i < size; ++i) {
            char c = s[i];
            if (k_special[static_cast<unsigned char>(c)] || (dots && c == '.')) return nullptr;
            p[i] = c;
        }
    }
    p += size;
    *p++ = '"';
    return p;
}

inline char* write_plain_string(char* p, std::string_view text) { return write_plain_text(p, text, false); }
inline char* write_plain_name(char* p, std::string_view text) { return write_plain_text(p, text, true); }

// Integer nanoseconds as std::to_chars writes them; the common case, a time since 1970-04
// (17 to 19 digits), in three pieces rather than two digits at a time.
inline char* write_nanoseconds(char* p, int64_t ns) {
    constexpr int64_t k_ten_to_16 = 10000000000000000;
    if (ns < k_ten_to_16) return std::to_chars(p, p + 24, ns).ptr;
    auto value = static_cast<uint64_t>(ns);
    p = std::to_chars(p, p + 4, value / k_ten_to_16).ptr;  // 1 to 3 digits
    value %= k_ten_to_16;
    write_8_digits(p, value / 100000000);
    write_8_digits(p + 8, value % 100000000);
    return p + 16;
}
}  // namespace

char* JsonEncoder::Impl::write_time(char* p, int64_t ns) const {
    if (m_time_format == TimeFormat::nanoseconds) return write_nanoseconds(p, ns);
    *p++ = '"';
    p = format_rfc3339(ns, p);
    *p++ = '"';
    return p;
}

// What encode() writes, for a message without a body, without dotted names (no nesting)
// or json fields, and with texts that need no escaping: written at a pointer into a buffer
// sized for the worst case: `out` itself, grown by that much and cut back to the line (a
// line written elsewhere and then copied would be read back while its stores are still
// on their way). False, with `out` as it was, for any other message: encode() writes it.
template <typename Out>
bool JsonEncoder::Impl::encode_plain(const Flat& message, Out& out) {
    if (message.barrier || !message.body.empty() || (!message.id.empty() && message.id.size() != 16))
        return false;
    constexpr size_t k_time_chars = k_rfc3339_max_chars + 2;
    size_t bound = 128 + 2 * k_time_chars + message.source.size() + message.gateway.size() +
                   message.kind.size();
    for (const auto& field : message.fields) {
        if (field.which == FieldValue::JSON) return false;  // dotted names: write_plain_name
        bound += field.name.size() + 4 + json::k_float_chars + field.text.size();
    }
    size_t old_size = out.size();
    out.resize(old_size + bound);
    char* start = reinterpret_cast<char*>(out.data()) + old_size;
    char* p = start;
    // Undone on the way out of a message that encode() must write.
    auto decline = [&] {
        out.resize(old_size);
        return false;
    };
    bool first = true;
    auto key = [&](std::string_view text) {  // ",\"name\":", the comma unless first
        if (first) text.remove_prefix(1);
        first = false;
        std::memcpy(p, text.data(), text.size());
        p += text.size();
    };
    *p++ = '{';
    if (!message.id.empty()) {
        key(",\"id\":");
        *p++ = '"';
        p = format_id(std::span(reinterpret_cast<const uint8_t*>(message.id.data()), 16), p);
        *p++ = '"';
    }
    if (message.time) {
        key(",\"time\":");
        p = write_time(p, message.time);
    }
    if (message.ingested) {
        key(",\"ingested\":");
        p = write_time(p, message.ingested);
    }
    for (auto [name, text] : {std::pair<std::string_view, std::string_view>{",\"source\":", message.source},
                              {",\"gateway\":", message.gateway},
                              {",\"kind\":", message.kind}}) {
        if (text.empty()) continue;
        key(name);
        if (!(p = write_plain_string(p, text))) return decline();
    }
    for (const auto& field : message.fields) {
        if (!first) *p++ = ',';
        first = false;
        if (!(p = write_plain_name(p, field.name))) return decline();
        *p++ = ':';
        switch (field.which) {
            case FieldValue::FLOAT:
                if (std::isfinite(field.float_value)) {
                    p = json::write_float(p, field.float_value);
                } else {
                    std::memcpy(p, "null", 4);
                    p += 4;
                }
                break;
            case FieldValue::INT: p = std::to_chars(p, p + 24, field.int_value).ptr; break;
            case FieldValue::TEXT:
                if (!(p = write_plain_string(p, field.text))) return decline();
                break;
            case FieldValue::BOOL:
                std::memcpy(p, field.bool_value ? "true" : "false", field.bool_value ? 4 : 5);
                p += field.bool_value ? 4 : 5;
                break;
            default: return decline();
        }
    }
    *p++ = '}';
    *p++ = '\n';
    out.resize(old_size + static_cast<size_t>(p - start));
    return true;
}

namespace {
std::string_view view(capnp::Text::Reader text) { return {text.begin(), text.size()}; }
std::string_view view(capnp::Data::Reader data) {
    return {reinterpret_cast<const char*>(data.begin()), data.size()};
}

// `key` is ",\"name\":": our own keys, which need no escaping; the comma unless first.
void append_key(std::string& out, std::string_view key, bool& first) {
    if (first) key.remove_prefix(1);
    first = false;
    out += key;
}

template <typename Integer>
void append_integer(std::string& out, Integer value) {
    char buffer[24];
    char* end = std::to_chars(buffer, buffer + sizeof(buffer), value).ptr;
    out.append(buffer, static_cast<size_t>(end - buffer));
}
}  // namespace

// What encode() reads of a message, in the order it always has, so that a reader that
// throws (a pointer of the wrong kind) throws as before; what it never read (the rest of
// a barrier, a field value of a newer kind) it still does not read.
void JsonEncoder::Impl::read(schema::Message::Reader message, Flat& flat) {
    flat.fields.clear();
    flat.barrier = message.getControl().isBarrier();
    if (flat.barrier) {
        auto barrier = message.getControl().getBarrier();
        flat.barrier_number = barrier.getNumber();
        flat.time = barrier.getTime();
        return;
    }
    flat.id = message.hasId() ? view(message.getId()) : std::string_view("", 0);
    flat.time = message.getTime();
    flat.ingested = message.getIngested();
    flat.source = view(message.getSource());
    flat.gateway = view(message.getGateway());
    flat.kind = view(message.getKind());
    if (message.hasFields()) {
        for (auto field : message.getFields()) {
            Field& out = flat.fields.emplace_back();
            out.name = view(field.getName());
            auto value = field.getValue();
            out.which = value.which();
            switch (out.which) {
                case FieldValue::FLOAT: out.float_value = value.getFloat(); break;
                case FieldValue::INT: out.int_value = value.getInt(); break;
                case FieldValue::TEXT: out.text = view(value.getText()); break;
                case FieldValue::BOOL: out.bool_value = value.getBool(); break;
                case FieldValue::JSON: out.text = view(value.getJson()); break;
                default: break;  // a variant newer than this code: written as null
            }
        }
    }
    flat.body = message.hasBody() ? view(message.getBody()) : std::string_view("", 0);
}

void JsonEncoder::Impl::append_time(std::string& out, int64_t ns) {
    if (m_time_format == TimeFormat::nanoseconds) {
        append_integer(out, ns);
        return;
    }
    char buffer[k_rfc3339_max_chars + 2];
    buffer[0] = '"';
    char* end = format_rfc3339(ns, buffer + 1);
    *end++ = '"';
    out.append(buffer, static_cast<size_t>(end - buffer));
}

void JsonEncoder::Impl::encode(const Flat& message, std::string& out) {
    bool first = true;
    out.push_back('{');
    if (message.barrier) {
        append_key(out, ",\"$barrier\":", first);
        append_integer(out, message.barrier_number);
        append_key(out, ",\"time\":", first);
        append_time(out, message.time);
        out += "}\n";
        return;
    }
    if (!message.id.empty()) {
        auto id = std::span(reinterpret_cast<const uint8_t*>(message.id.data()), message.id.size());
        char buffer[2 * 16 + 4 + 2];
        append_key(out, ",\"id\":", first);
        if (id.size() == 16) {
            buffer[0] = '"';
            char* end = format_id(id, buffer + 1);
            *end++ = '"';
            out.append(buffer, static_cast<size_t>(end - buffer));
        } else {
            // Not an mh id: kept as hex digits rather than dropped.
            out.push_back('"');
            for (size_t i = 0; i < id.size(); i += 16) {
                size_t n = std::min<size_t>(16, id.size() - i);
                char* end = format_id(id.subspan(i, n), buffer);
                out.append(buffer, static_cast<size_t>(end - buffer));
            }
            out.push_back('"');
        }
    }
    if (message.time) {
        append_key(out, ",\"time\":", first);
        append_time(out, message.time);
    }
    if (message.ingested) {
        append_key(out, ",\"ingested\":", first);
        append_time(out, message.ingested);
    }
    auto append_text = [&](std::string_view key, std::string_view text) {
        if (text.empty()) return;
        append_key(out, key, first);
        json::append_string(out, text);
    };
    append_text(",\"source\":", message.source);
    append_text(",\"gateway\":", message.gateway);
    append_text(",\"kind\":", message.kind);
    if (!message.fields.empty()) append_fields(out, message.fields, first);
    if (!message.body.empty()) {
        append_key(out, ",\"body\":", first);
        if (is_valid_utf8(message.body)) {
            json::append_string(out, message.body);
        } else {
            out += "{\"base64\":\"";
            json::append_base64(out, std::as_bytes(std::span(message.body)));
            out += "\"}";
        }
    }
    out += "}\n";
}

void JsonEncoder::Impl::append_value(std::string& out, const Field& value) {
    switch (value.which) {
        case FieldValue::FLOAT: {
            double number = value.float_value;
            if (std::isfinite(number))
                json::append_float(out, number);
            else
                out += "null";
            return;
        }
        case FieldValue::INT:
            append_integer(out, value.int_value);
            return;
        case FieldValue::TEXT:
            json::append_string(out, value.text);
            return;
        case FieldValue::BOOL:
            out += value.bool_value ? "true" : "false";
            return;
        case FieldValue::JSON: {
            std::string_view text = value.text;
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

void JsonEncoder::Impl::append_fields(std::string& out, const std::vector<Field>& fields,
                                      bool& first) {
    bool dotted = false;
    for (auto& field : fields) {
        if (std::memchr(field.name.data(), '.', field.name.size())) {
            dotted = true;
            break;
        }
    }
    if (!dotted) {
        for (auto& field : fields) {
            if (!first) out.push_back(',');
            first = false;
            json::append_string(out, field.name);
            out.push_back(':');
            append_value(out, field);
        }
        return;
    }

    m_sorted_names.clear();
    for (auto& field : fields) m_sorted_names.push_back(field.name);
    std::sort(m_sorted_names.begin(), m_sorted_names.end());
    m_nodes.clear();
    m_nodes.push_back(Node{{}, -1});  // the root: the message object itself
    for (size_t i = 0; i < fields.size(); ++i) {
        std::string_view name = fields[i].name;
        size_t value_depth = fields[i].which == FieldValue::JSON ? json_depth(fields[i].text) : 0;
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

void JsonEncoder::Impl::append_children(std::string& out, const std::vector<Field>& fields,
                                        int32_t node, bool& first) {
    for (int32_t child = m_nodes[static_cast<size_t>(node)].first_child; child >= 0;
         child = m_nodes[static_cast<size_t>(child)].next) {
        const Node& entry = m_nodes[static_cast<size_t>(child)];
        if (!first) out.push_back(',');
        first = false;
        json::append_string(out, entry.key);
        out.push_back(':');
        if (entry.field >= 0) {
            append_value(out, fields[static_cast<size_t>(entry.field)]);
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
    m_frame.clear();
    wire::Next next = next_into(wait, m_frame);
    if (next == wire::Next::frame) {
        // operator new aligns at least as strictly as a Cap'n Proto word.
        frame.words = reinterpret_cast<const capnp::word*>(m_frame.data());
        frame.word_count = m_frame.size() / sizeof(capnp::word);
    }
    return next;
}

wire::Next JsonLineSource::next_into(wire::Wait wait, std::vector<std::byte>& out) {
    for (;;) {
        std::string_view line;
        wire::Next next = m_reader.next(wait, line);
        if (next != wire::Next::frame) return next;

        std::optional<std::string> reason;
        size_t start = out.size();
        if (m_reader.oversized()) {
            reason = fmt::format("longer than the limit of {} bytes", m_reader.max_line_bytes());
        } else {
            // Blank (spaces and tabs only): skipped. A loop, not find_first_not_of: it stops
            // at the first byte, and a call per line costs more.
            bool blank = true;
            for (char c : line) {
                if (c != ' ' && c != '\t') {
                    blank = false;
                    break;
                }
            }
            if (blank) continue;
            reason = m_decoder.decode(line, out, Padding::present);
            if (!reason && out.size() - start > m_limits.max_frame_bytes) {
                reason = fmt::format("message of {} bytes is over the frame limit of {} bytes",
                                     out.size() - start, m_limits.max_frame_bytes);
                out.resize(start);
            }
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
        return wire::Next::frame;
    }
}

// ---- JsonSink ----------------------------------------------------------------------------

JsonSink::JsonSink(int fd, TimeFormat time_format, wire::FrameLimits limits)
    : m_output(fd), m_encoder(time_format), m_opener(limits), m_max_frame_bytes(limits.max_frame_bytes) {}

std::optional<std::string> JsonSink::check_and_write(const wire::Frame& frame,
                                                    const wire::FrameLimits& limits) {
    // check_frame()'s own first test (read_message_view within the limit), made by
    // encode_frame(); a frame past this sink's own limit goes the long way, as in write().
    if (frame.byte_count() <= limits.max_frame_bytes && frame.byte_count() <= m_max_frame_bytes &&
        m_encoder.encode_frame(frame, m_output.buffer())) {
        m_output.commit();
        return std::nullopt;
    }
    if (auto reason = wire::check_frame(frame, limits)) return reason;
    write(frame);
    return std::nullopt;
}

void JsonSink::write(const wire::Frame& frame) {
    // Frames within the limit, so that the opener's traversal limit could not refuse one.
    // Written straight into the output's buffer: no line to copy.
    if (frame.byte_count() <= m_max_frame_bytes && m_encoder.encode_frame(frame, m_output.buffer())) {
        m_output.commit();
        return;
    }
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
