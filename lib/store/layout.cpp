#include "store/layout.h"

#include <cstring>

namespace mh::store {

namespace {
constexpr uint64_t k_sign_bit = uint64_t{1} << 63;
constexpr std::string_view k_empty_source_key{"\0", 1};  // LMDB keys cannot be empty
}  // namespace

void encode_time(int64_t time_ns, std::byte* out) {
    uint64_t ordered = static_cast<uint64_t>(time_ns) ^ k_sign_bit;
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<std::byte>(ordered & 0xff);
        ordered >>= 8;
    }
}

int64_t decode_time(const std::byte* in) {
    uint64_t ordered = 0;
    for (int i = 0; i < 8; ++i) ordered = (ordered << 8) | static_cast<uint64_t>(in[i]);
    return static_cast<int64_t>(ordered ^ k_sign_bit);
}

TimeKey time_key(int64_t time_ns, std::span<const uint8_t> id) {
    TimeKey key{};
    encode_time(time_ns, key.data());
    std::memcpy(key.data() + k_time_bytes, id.data(), std::min(id.size(), k_id_bytes));
    return key;
}

std::string_view source_key(std::string_view source) { return source.empty() ? k_empty_source_key : source; }

std::string_view source_from_key(std::string_view key) {
    return key == k_empty_source_key ? std::string_view() : key;
}

}  // namespace mh::store
