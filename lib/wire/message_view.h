// A message read straight from the words of a frame in mh's own layout, without Cap'n
// Proto: what every mh writer produces is recognised by one pass over its pointers and read
// as plain views, for the hot paths (JsonSink, check_frame). Any other frame is declined and
// goes through FrameOpener and Cap'n Proto's reader, which read or refuse it as ever. The
// same layout is written back from views by append_message_view().
#pragma once

#include "schema/message.capnp.h"
#include "wire/frame.h"

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace mh::wire {

// The schema's layout, as the generated code has it (static_asserts in message_view.cpp):
// sizes in words, pointer slots, and where the unions keep their tags.
namespace layout {
constexpr uint64_t k_message_data_words = 3, k_message_pointers = 7;
constexpr uint64_t k_field_data_words = 2, k_field_pointers = 2;
constexpr uint64_t k_barrier_data_words = 2;
enum MessageSlot : uint64_t { k_id, k_source, k_gateway, k_kind, k_fields, k_body, k_barrier };
constexpr size_t k_control_byte = 16;    // Message.control's tag, a uint16 after two words
constexpr size_t k_field_tag_byte = 8;   // Field.value's tag, a uint16 after one word
constexpr uint64_t k_byte_elements = 2;  // element sizes in a list pointer
constexpr uint64_t k_composite_elements = 7;

inline uint64_t text_words(size_t bytes) { return (bytes + 1 + 7) / 8; }  // with its NUL
inline uint64_t data_words(size_t bytes) { return (bytes + 7) / 8; }

// Words of one zeroed segment being written in place, as Cap'n Proto's builder would lay
// them out; `at` and `target` are word indexes in it. Used by the writers that skip the
// builder: append_message_view() and the JSON decoder's direct path.
class SegmentWriter {
public:
    explicit SegmentWriter(std::byte* segment) : m_segment(segment) {}

    void word(uint64_t at, uint64_t value) { std::memcpy(m_segment + at * 8, &value, 8); }
    void tag(uint64_t at, size_t byte, uint16_t value) { std::memcpy(m_segment + at * 8 + byte, &value, 2); }
    // A pointer's offset counts words from the end of the pointer to its target.
    static uint64_t offset(uint64_t at, uint64_t target) {
        return static_cast<uint32_t>(static_cast<int32_t>(target - at - 1) << 2);
    }
    void struct_pointer(uint64_t at, uint64_t target, uint64_t data, uint64_t pointers) {
        word(at, offset(at, target) | data << 32 | pointers << 48);
    }
    void list_pointer(uint64_t at, uint64_t target, uint64_t element_size, uint64_t count) {
        word(at, offset(at, target) | 1 | (element_size | count << 3) << 32);
    }
    // Text (NUL-terminated) or Data at the next free word, pointed to from `at`.
    void bytes(uint64_t at, std::string_view bytes, bool is_text) {
        list_pointer(at, m_next, k_byte_elements, bytes.size() + is_text);
        copy(m_segment + m_next * 8, bytes.data(), bytes.size());
        m_next += is_text ? text_words(bytes.size()) : data_words(bytes.size());
    }
    // The same, but empty bytes stay a null pointer (an unset part).
    void bytes_if_any(uint64_t at, std::string_view bytes, bool is_text) {
        if (!bytes.empty()) this->bytes(at, bytes, is_text);
    }
    uint64_t allocate(uint64_t words) {
        uint64_t at = m_next;
        m_next += words;
        return at;
    }

private:
    // memcpy, inline for the short texts most are (names, sources, ids): two loads and two
    // stores that may overlap, never a byte outside [to, to + size).
    static void copy(std::byte* to, const char* from, size_t size) {
        if (size >= 8 && size <= 16) {
            uint64_t head, tail;
            std::memcpy(&head, from, 8);
            std::memcpy(&tail, from + size - 8, 8);
            std::memcpy(to, &head, 8);
            std::memcpy(to + size - 8, &tail, 8);
        } else if (size >= 4 && size < 8) {
            uint32_t head, tail;
            std::memcpy(&head, from, 4);
            std::memcpy(&tail, from + size - 4, 4);
            std::memcpy(to, &head, 4);
            std::memcpy(to + size - 4, &tail, 4);
        } else if (size > 0) {
            std::memcpy(to, from, size);
        }
    }

    std::byte* m_segment;
    uint64_t m_next = 0;
};
}  // namespace layout

struct FieldView {
    std::string_view name;
    schema::Field::Value::Which which;
    double float_value;
    int64_t int_value;
    bool bool_value;
    std::string_view text;  // text or json
};

// Views into the frame (absent parts are empty, never null), valid while it is.
struct MessageView {
    bool barrier = false;
    uint64_t barrier_number = 0;
    int64_t time = 0, ingested = 0;  // time: the barrier's for a barrier
    std::string_view id, source, gateway, kind, body;
    std::vector<FieldView> fields;
};

// True when `frame` is in mh's layout: one segment; the root a Message of exactly today's
// size; every pointer null or of the kind the schema says and in bounds; texts
// NUL-terminated; field lists of today's Field size with known value kinds; no pointer
// where the union's current member has none (a barrier has only its barrier); and objects
// adding up to no more words than the segment, so that no traversal limit could refuse it.
// Cap'n Proto reads such a frame without an exception, and check_frame() passes it. Fills
// `view` when one is given.
bool read_message_view(const Frame& frame, MessageView* view);

// Appends `view` to `out` as one frame in mh's layout, the words Cap'n Proto's builder would
// write for the same message (read_message_view() reads it back the same), without the
// builder: for the endpoint, which stamps every message it takes in.
void append_message_view(const MessageView& view, std::vector<std::byte>& out);
// How many bytes append_message_view() appends for `view`.
size_t message_view_bytes(const MessageView& view);

}  // namespace mh::wire
