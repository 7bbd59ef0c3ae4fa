// Message ids: 16 bytes in the UUIDv7 layout (48-bit Unix milliseconds, version,
// 12 bits of sub-millisecond order, variant, 62 random bits), so ids sort by time.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace mh {

using MessageId = std::array<uint8_t, 16>;

constexpr size_t k_id_text_chars = 36;  // 8-4-4-4-12 hex digits and dashes

// Makes time-ordered ids. Within one generator ids strictly increase, even for equal
// or backward times, because the 12-bit sub-millisecond part doubles as a counter.
class IdGenerator {
public:
    explicit IdGenerator(uint64_t seed);
    MessageId next(int64_t unix_ns);

private:
    uint64_t random64();
    uint64_t m_state;
    uint64_t m_last_stamp = 0;  // 48-bit ms << 12 | 12-bit order
};

// Writes the canonical lowercase 8-4-4-4-12 form; returns the end of what it wrote.
char* format_id(std::span<const uint8_t> id, char* out);

// Accepts the dashed form or 32 plain hex digits, either case.
std::optional<MessageId> parse_id(std::string_view text);
// The same, a table lookup per digit: what parse_id does without SSE2, and its reference in
// the tests.
std::optional<MessageId> parse_id_portable(std::string_view text);

}  // namespace mh
