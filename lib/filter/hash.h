// Seedless 64-bit hashes of message ids and names, the same on every machine and run:
// sampling, deduplication and derived alert ids must give the same answer on a replay.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace mh::filter {

// The splitmix64 finalizer: a bijection of 64-bit words that spreads every input bit
// over the whole output.
constexpr uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Big-endian, as the id's bytes read in its text form; byte order of the host does not matter.
inline uint64_t load_be64(const uint8_t* p) {
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value = value << 8 | p[i];
    return value;
}

// A 16-byte id. UUIDv7 ids carry 62 random bits, but the hash must not rely on them:
// ids made elsewhere may be sequential.
inline uint64_t hash_id(std::span<const uint8_t, 16> id) {
    constexpr uint64_t k_salt = 0x9e3779b97f4a7c15ULL;
    return mix64(load_be64(id.data()) ^ mix64(load_be64(id.data() + 8) + k_salt));
}

// FNV-1a over the bytes, then mixed (FNV alone leaves the high bits weak for short text).
constexpr uint64_t hash_text(std::string_view text) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : text) {
        h ^= static_cast<uint8_t>(c);
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

// The 48-bit Unix milliseconds at the start of a UUIDv7 id.
inline int64_t id_time_ms(std::span<const uint8_t, 16> id) {
    uint64_t ms = 0;
    for (int i = 0; i < 6; ++i) ms = ms << 8 | id[i];
    return static_cast<int64_t>(ms);
}

}  // namespace mh::filter
