#include "message/id.h"

#include <algorithm>
#include <cstring>

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

char* format_id(std::span<const uint8_t> id, char* out) {
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

std::optional<MessageId> parse_id(std::string_view text) {
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
