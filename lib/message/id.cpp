#include "message/id.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mh {

IdGenerator::IdGenerator(uint64_t seed) : m_state(seed) {}

uint64_t IdGenerator::random64() {
    // splitmix64: fast, and good enough for the random tail of an id.
    uint64_t z = (m_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

MessageId IdGenerator::next(int64_t unix_ns) {
    uint64_t ns = unix_ns > 0 ? static_cast<uint64_t>(unix_ns) : 0;
    uint64_t ms = (ns / 1'000'000) & 0xffff'ffff'ffffULL;
    uint64_t sub = ((ns % 1'000'000) * 4096) / 1'000'000;  // fraction of the ms in 12 bits
    uint64_t stamp = (ms << 12) | sub;
    if (stamp <= m_last_stamp) stamp = m_last_stamp + 1;
    m_last_stamp = stamp;

    uint64_t high = (stamp >> 12 << 16) | 0x7000 | (stamp & 0xfff);
    uint64_t low = (random64() & 0x3fff'ffff'ffff'ffffULL) | 0x8000'0000'0000'0000ULL;
    MessageId id;
    for (int i = 0; i < 8; ++i) {
        id[i] = static_cast<uint8_t>(high >> (56 - 8 * i));
        id[8 + i] = static_cast<uint8_t>(low >> (56 - 8 * i));
    }
    return id;
}

#if defined(__SSE2__)
namespace {
// Eight bytes -> their sixteen lower-case hex digits, with one set of vector operations.
inline void hex_of_8(const uint8_t* bytes, char* out) {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
    __m128i high = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    __m128i low = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i nibbles = _mm_unpacklo_epi8(high, low);  // h0 l0 h1 l1 ...
    // '0' + n, and 'a' - '0' - 10 more above 9.
    __m128i letters = _mm_and_si128(_mm_cmpgt_epi8(nibbles, _mm_set1_epi8(9)), _mm_set1_epi8(39));
    __m128i text = _mm_add_epi8(_mm_add_epi8(nibbles, _mm_set1_epi8('0')), letters);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), text);
}
}  // namespace
#endif

char* format_id(std::span<const uint8_t> id, char* out) {
#if defined(__SSE2__)
    if (id.size() == 16) {  // an mh id: the dashed 8-4-4-4-12 form
        char hex[32];
        hex_of_8(id.data(), hex);
        hex_of_8(id.data() + 8, hex + 16);
        std::memcpy(out, hex, 8);
        out[8] = '-';
        std::memcpy(out + 9, hex + 8, 4);
        out[13] = '-';
        std::memcpy(out + 14, hex + 12, 4);
        out[18] = '-';
        std::memcpy(out + 19, hex + 16, 4);
        out[23] = '-';
        std::memcpy(out + 24, hex + 20, 12);
        return out + 36;
    }
#endif
    static constexpr char k_hex[] = "0123456789abcdef";
    for (size_t i = 0; i < id.size(); ++i) {
        if (id.size() == 16 && (i == 4 || i == 6 || i == 8 || i == 10)) *out++ = '-';
        *out++ = k_hex[id[i] >> 4];
        *out++ = k_hex[id[i] & 0xf];
    }
    return out;
}

namespace {
// Hex digit values, 0xff for everything else: one load per character on a hot path
// (every JSON line with an id goes through here).
constexpr std::array<uint8_t, 256> k_hex_values = [] {
    std::array<uint8_t, 256> table{};
    table.fill(0xff);
    for (int c = '0'; c <= '9'; ++c) table[c] = static_cast<uint8_t>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) table[c] = static_cast<uint8_t>(c - 'a' + 10);
    for (int c = 'A'; c <= 'F'; ++c) table[c] = static_cast<uint8_t>(c - 'A' + 10);
    return table;
}();
}  // namespace

#if defined(__SSE2__)
namespace {
// Sixteen hex digits (either case) -> eight bytes, as 16-bit lanes; false when any is not
// a hex digit.
inline bool bytes_of_16(__m128i c, __m128i& out) {
    // x <= limit, unsigned: min(x, limit) == x.
    auto at_most = [](__m128i x, char limit) {
        return _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(limit)), x);
    };
    __m128i digit = _mm_sub_epi8(c, _mm_set1_epi8('0'));
    __m128i is_digit = at_most(digit, 9);
    // Setting 0x20 lowers A-F to a-f, and maps no other byte into a-f.
    __m128i letter = _mm_sub_epi8(_mm_or_si128(c, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    __m128i is_letter = at_most(letter, 5);
    if (_mm_movemask_epi8(_mm_or_si128(is_digit, is_letter)) != 0xffff) return false;
    __m128i value = _mm_or_si128(_mm_and_si128(is_digit, digit),
                                 _mm_and_si128(is_letter, _mm_add_epi8(letter, _mm_set1_epi8(10))));
    // Pairs as 16-bit lanes, the first digit in the low byte: (first << 4) | second.
    out = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(value, _mm_set1_epi16(0x00ff)), 4),
                       _mm_srli_epi16(value, 8));
    return true;
}

// The id's 32 digits, in two registers: its 16 bytes, stored at once (the caller reloads them
// whole, which a store of two halves would stall).
inline std::optional<MessageId> id_of_32(__m128i first, __m128i second) {
    __m128i high, low;
    if (!bytes_of_16(first, high) || !bytes_of_16(second, low)) return std::nullopt;
    MessageId id;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(id.data()), _mm_packus_epi16(high, low));
    return id;
}
}  // namespace
#endif

std::optional<MessageId> parse_id(std::string_view text) {
#if defined(__SSE2__)
    if (text.size() == k_id_text_chars) {
        if (text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-') return std::nullopt;
        // The 32 digits gathered in registers, not through a buffer on the stack: a 16-byte
        // load of what narrower stores just wrote stalls (no store forwarding).
        auto load = [&](size_t at, auto word) {
            std::memcpy(&word, text.data() + at, sizeof(word));
            return static_cast<uint64_t>(word);
        };
        __m128i first = _mm_set_epi64x(static_cast<int64_t>(load(9, uint32_t{}) | load(14, uint32_t{}) << 32),
                                       static_cast<int64_t>(load(0, uint64_t{})));
        __m128i second = _mm_set_epi64x(static_cast<int64_t>(load(28, uint64_t{})),
                                        static_cast<int64_t>(load(19, uint32_t{}) | load(24, uint32_t{}) << 32));
        return id_of_32(first, second);
    }
    if (text.size() == 32) {
        auto load = [&](size_t at) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(text.data() + at)); };
        return id_of_32(load(0), load(16));
    }
    return std::nullopt;
#else
    return parse_id_portable(text);
#endif
}

std::optional<MessageId> parse_id_portable(std::string_view text) {
    // Where each byte's two hex digits start: the dashed 8-4-4-4-12 form or 32 plain digits.
    static constexpr std::array<uint8_t, 16> k_dashed = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    static constexpr std::array<uint8_t, 16> k_plain = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    const std::array<uint8_t, 16>* offsets;
    if (text.size() == k_id_text_chars) {
        if (text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-') return std::nullopt;
        offsets = &k_dashed;
    } else if (text.size() == 32) {
        offsets = &k_plain;
    } else {
        return std::nullopt;
    }
    MessageId id;
    uint8_t bad = 0;
    for (size_t i = 0; i < id.size(); ++i) {
        uint8_t hi = k_hex_values[static_cast<unsigned char>(text[(*offsets)[i]])];
        uint8_t lo = k_hex_values[static_cast<unsigned char>(text[(*offsets)[i] + 1])];
        bad |= hi | lo;
        id[i] = static_cast<uint8_t>(hi << 4 | (lo & 0x0f));
    }
    if (bad & 0xf0) return std::nullopt;  // some character was not a hex digit
    return id;
}

}  // namespace mh
