#include "message/id.h"

#include <algorithm>

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
int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
}  // namespace

std::optional<MessageId> parse_id(std::string_view text) {
    bool dashed = text.size() == k_id_text_chars;
    if (!dashed && text.size() != 32) return std::nullopt;
    MessageId id{};
    size_t pos = 0;
    for (size_t i = 0; i < id.size(); ++i) {
        if (dashed && (i == 4 || i == 6 || i == 8 || i == 10)) {
            if (text[pos] != '-') return std::nullopt;
            ++pos;
        }
        int hi = hex_value(text[pos]);
        int lo = hex_value(text[pos + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        id[i] = static_cast<uint8_t>(hi << 4 | lo);
        pos += 2;
    }
    return id;
}

}  // namespace mh
