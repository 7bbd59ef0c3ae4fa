#include "wire/message_view.h"

#include <cstring>

namespace mh::wire {

using namespace layout;

static_assert(schema::Message::_capnpPrivate::dataWordSize == k_message_data_words &&
              schema::Message::_capnpPrivate::pointerCount == k_message_pointers);
static_assert(schema::Field::_capnpPrivate::dataWordSize == k_field_data_words &&
              schema::Field::_capnpPrivate::pointerCount == k_field_pointers);
static_assert(schema::Barrier::_capnpPrivate::dataWordSize == k_barrier_data_words &&
              schema::Barrier::_capnpPrivate::pointerCount == 0);

namespace {

// The words of one segment. Objects may take up no more words than the segment in all
// (what a traversal limit of the segment's size allows): their sizes add up in m_used,
// judged once at the end by within_budget(); each object is bounds-checked as it is met.
class SegmentWords {
public:
    SegmentWords(const capnp::word* words, size_t count)
        : m_words(reinterpret_cast<const std::byte*>(words)), m_count(count) {}

    uint64_t word(uint64_t at) const {
        uint64_t value;
        std::memcpy(&value, m_words + at * 8, 8);
        return value;
    }
    uint16_t tag(uint64_t at, size_t byte) const {
        uint16_t value;
        std::memcpy(&value, m_words + at * 8 + byte, 2);
        return value;
    }
    // Where the (struct or list) pointer in word `at` points, for an object of `words`.
    [[gnu::always_inline]] bool target(uint64_t at, uint64_t pointer, uint64_t words, uint64_t& start) {
        // The offset is a signed 30-bit count of words; at + 1 + offset, kept unsigned: a
        // target before the segment wraps to a huge value and fails the bound as well.
        uint64_t first = at + 1 + static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(pointer)) >> 2);
        if (first > m_count || words > m_count - first) return false;
        m_used += words;
        start = first;
        return true;
    }
    // A struct pointer in word `at` to exactly `data` words and `pointers` pointers.
    bool structure(uint64_t at, uint64_t data, uint64_t pointers, uint64_t& start) {
        uint64_t pointer = word(at);
        return pointer >> 32 == (data | pointers << 16) && (pointer & 3) == 0 &&
               target(at, pointer, data + pointers, start);
    }
    // Data (is_text: Text, less its NUL) at the pointer in word `at`; null reads as empty.
    // Inlined: it runs for every header part and field name of every frame.
    [[gnu::always_inline]] bool bytes(uint64_t at, bool is_text, std::string_view& out) {
        uint64_t pointer = word(at);
        if (pointer == 0) {
            out = std::string_view("", 0);
            return true;
        }
        uint64_t count = pointer >> 35;
        uint64_t start;
        // A list pointer (kind 1) of bytes (element size 2).
        if ((pointer & 0x700000003) != (k_byte_elements << 32 | 1) ||
            !target(at, pointer, (count + 7) / 8, start))
            return false;
        auto* data = reinterpret_cast<const char*>(m_words + start * 8);
        if (is_text) {
            if (count == 0 || data[count - 1] != '\0') return false;
            --count;
        }
        out = {count ? data : "", count};
        return true;
    }
    bool within_budget() const { return m_used <= m_count; }

private:
    const std::byte* m_words;
    uint64_t m_count;
    uint64_t m_used = 0;
};

}  // namespace

bool read_message_view(const Frame& frame, MessageView* view) {
    if (frame.word_count < 2) return false;
    uint32_t table[2];
    std::memcpy(table, frame.words, sizeof(table));
    if (table[0] != 0 || table[1] != frame.word_count - 1) return false;
    SegmentWords words(frame.words + 1, frame.word_count - 1);
    uint64_t message;
    if (!words.structure(0, k_message_data_words, k_message_pointers, message)) return false;
    uint64_t pointers = message + k_message_data_words;
    uint16_t control = words.tag(message, k_control_byte);
    if (control == schema::Message::Control::BARRIER) {
        for (uint64_t slot = 0; slot < k_barrier; ++slot)
            if (words.word(pointers + slot) != 0) return false;
        uint64_t barrier;
        if (!words.structure(pointers + k_barrier, k_barrier_data_words, 0, barrier) ||
            !words.within_budget())
            return false;
        if (view) {
            view->fields.clear();
            view->barrier = true;
            view->barrier_number = words.word(barrier);
            view->time = static_cast<int64_t>(words.word(barrier + 1));
        }
        return true;
    }
    if (control != schema::Message::Control::NONE || words.word(pointers + k_barrier) != 0)
        return false;
    // Checked into locals: a check alone (no view) builds nothing.
    std::string_view id, source, gateway, kind, body;
    if (!words.bytes(pointers + k_id, false, id) || !words.bytes(pointers + k_source, true, source) ||
        !words.bytes(pointers + k_gateway, true, gateway) ||
        !words.bytes(pointers + k_kind, true, kind) || !words.bytes(pointers + k_body, false, body))
        return false;
    if (view) {
        view->barrier = false;
        view->time = static_cast<int64_t>(words.word(message));
        view->ingested = static_cast<int64_t>(words.word(message + 1));
        view->id = id;
        view->source = source;
        view->gateway = gateway;
        view->kind = kind;
        view->body = body;
    }
    uint64_t list = words.word(pointers + k_fields);
    if (list == 0) {
        if (view) view->fields.clear();
        return words.within_budget();
    }
    constexpr uint64_t k_field_words = k_field_data_words + k_field_pointers;
    uint64_t list_words = list >> 35, start;
    if ((list & 0x700000003) != (k_composite_elements << 32 | 1) ||
        !words.target(pointers + k_fields, list, list_words + 1, start))
        return false;
    // The tag word: shaped like a struct pointer whose offset is the element count.
    uint64_t tag = words.word(start);
    uint64_t count = tag >> 2 & 0x3FFFFFFF;
    if ((tag & 3) != 0 || tag >> 32 != (k_field_data_words | k_field_pointers << 16) ||
        count * k_field_words != list_words)
        return false;
    // Sized once (a stream's messages mostly have as many fields as the last), then filled.
    FieldView local;
    FieldView* out = &local;
    if (view) {
        if (view->fields.size() != count) view->fields.resize(count);
        out = view->fields.data();
    }
    for (uint64_t i = 0; i < count; ++i) {
        FieldView& field = *out;
        if (view) ++out;
        uint64_t element = start + 1 + i * k_field_words;
        uint64_t name = element + k_field_data_words;
        if (!words.bytes(name, true, field.name)) return false;
        field.which = static_cast<schema::Field::Value::Which>(words.tag(element, k_field_tag_byte));
        uint64_t value = words.word(element);
        switch (field.which) {
            case schema::Field::Value::FLOAT:
                std::memcpy(&field.float_value, &value, 8);
                if (words.word(name + 1) != 0) return false;
                break;
            case schema::Field::Value::INT:
                field.int_value = static_cast<int64_t>(value);
                if (words.word(name + 1) != 0) return false;
                break;
            case schema::Field::Value::BOOL:
                field.bool_value = value & 1;
                if (words.word(name + 1) != 0) return false;
                break;
            case schema::Field::Value::TEXT:
            case schema::Field::Value::JSON:
                if (!words.bytes(name + 1, true, field.text)) return false;
                break;
            default: return false;
        }
    }
    return words.within_budget();
}

namespace {

bool has_text(schema::Field::Value::Which which) {
    return which == schema::Field::Value::TEXT || which == schema::Field::Value::JSON;
}

// Words of the segment: the header's parts when set, field names and text values always
// (an empty one as its NUL), as the builder and the JSON decoder write them.
uint64_t segment_words(const MessageView& view) {
    constexpr uint64_t k_field_words = k_field_data_words + k_field_pointers;
    uint64_t words = 1 + k_message_data_words + k_message_pointers;
    if (view.barrier) return words + k_barrier_data_words;
    words += data_words(view.id.size()) + data_words(view.body.size());
    for (auto text : {view.source, view.gateway, view.kind})
        if (!text.empty()) words += text_words(text.size());
    if (!view.fields.empty()) words += 1 + view.fields.size() * k_field_words;
    for (const FieldView& field : view.fields) {
        words += text_words(field.name.size());
        if (has_text(field.which)) words += text_words(field.text.size());
    }
    return words;
}

}  // namespace

size_t message_view_bytes(const MessageView& view) { return 8 + segment_words(view) * 8; }

void append_message_view(const MessageView& view, std::vector<std::byte>& out) {
    constexpr uint64_t k_field_words = k_field_data_words + k_field_pointers;
    uint64_t words = segment_words(view);
    // The segment table of one segment: its count less one (0), then its size in words.
    size_t start = out.size();
    out.resize(start + 8 + words * 8);  // zeroed, as a fresh segment is
    uint32_t table[2] = {0, static_cast<uint32_t>(words)};
    std::memcpy(out.data() + start, table, sizeof(table));
    SegmentWriter segment(out.data() + start + 8);
    uint64_t root = segment.allocate(1);
    uint64_t message = segment.allocate(k_message_data_words + k_message_pointers);
    segment.struct_pointer(root, message, k_message_data_words, k_message_pointers);
    uint64_t pointers = message + k_message_data_words;
    if (view.barrier) {
        uint64_t barrier = segment.allocate(k_barrier_data_words);
        segment.tag(message, k_control_byte, schema::Message::Control::BARRIER);
        segment.struct_pointer(pointers + k_barrier, barrier, k_barrier_data_words, 0);
        segment.word(barrier, view.barrier_number);
        segment.word(barrier + 1, static_cast<uint64_t>(view.time));
        return;
    }
    segment.word(message, static_cast<uint64_t>(view.time));
    segment.word(message + 1, static_cast<uint64_t>(view.ingested));
    segment.bytes_if_any(pointers + k_id, view.id, false);
    segment.bytes_if_any(pointers + k_source, view.source, true);
    segment.bytes_if_any(pointers + k_gateway, view.gateway, true);
    segment.bytes_if_any(pointers + k_kind, view.kind, true);
    if (!view.fields.empty()) {
        uint64_t count = view.fields.size();
        uint64_t list = segment.allocate(1 + count * k_field_words);
        segment.list_pointer(pointers + k_fields, list, k_composite_elements, count * k_field_words);
        // The tag word: shaped like a struct pointer whose offset is the element count.
        segment.word(list, count << 2 | k_field_data_words << 32 | k_field_pointers << 48);
        uint64_t element = list + 1;
        for (const FieldView& field : view.fields) {
            uint64_t name = element + k_field_data_words;
            segment.bytes(name, field.name, true);
            segment.tag(element, k_field_tag_byte, static_cast<uint16_t>(field.which));
            switch (field.which) {
                case schema::Field::Value::FLOAT: {
                    uint64_t bits;
                    std::memcpy(&bits, &field.float_value, 8);
                    segment.word(element, bits);
                    break;
                }
                case schema::Field::Value::INT: segment.word(element, static_cast<uint64_t>(field.int_value)); break;
                case schema::Field::Value::BOOL: segment.word(element, field.bool_value ? 1 : 0); break;
                case schema::Field::Value::TEXT:
                case schema::Field::Value::JSON: segment.bytes(name + 1, field.text, true); break;
            }
            element += k_field_words;
        }
    }
    segment.bytes_if_any(pointers + k_body, view.body, false);
}

}  // namespace mh::wire
