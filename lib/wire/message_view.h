// A message read straight from the words of a frame in mh's own layout, without Cap'n
// Proto: what every mh writer produces is recognised by one pass over its pointers and read
// as plain views, for the hot paths (JsonSink, check_frame). Any other frame is declined and
// goes through FrameOpener and Cap'n Proto's reader, which read or refuse it as ever. The
// same layout is written back from views by append_message_view().
#pragma once

#include "schema/message.capnp.h"
#include "wire/frame.h"

#include <cstdint>
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
