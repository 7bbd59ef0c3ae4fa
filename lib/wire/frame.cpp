#include "wire/frame.h"

#include "wire/frame_opener.h"
#include "wire/message_view.h"

#include <kj/exception.h>

#include <cstring>

namespace mh::wire {
namespace {
uint32_t read_u32_le(const std::byte* p) {
    uint32_t value;
    std::memcpy(&value, p, sizeof(value));  // the wire and x86/ARM are little-endian
    return value;
}

size_t table_bytes(uint32_t segment_count) {
    // One u32 count, one u32 size per segment, padded to a whole word.
    return ((segment_count + 2) / 2) * sizeof(capnp::word);
}
}  // namespace

FrameScan scan_frame(std::span<const std::byte> bytes, const FrameLimits& limits) {
    if (bytes.size() < sizeof(capnp::word)) return {ScanStatus::incomplete, 0};
    uint32_t segment_count = read_u32_le(bytes.data()) + 1;
    size_t header = sizeof(capnp::word);
    size_t body_words = 0;
    if (segment_count == 1) {  // what mh writes: the table is one word, count and size
        body_words = read_u32_le(bytes.data() + 4);
    } else {
        if (segment_count == 0 || segment_count > k_max_segments) return {ScanStatus::bad_segments, 0};
        header = table_bytes(segment_count);
        if (bytes.size() < header) return {ScanStatus::incomplete, header};
        for (uint32_t i = 0; i < segment_count; ++i) body_words += read_u32_le(bytes.data() + 4 + 4 * i);
    }
    if (body_words == 0) return {ScanStatus::bad_segments, 0};
    size_t total = header + body_words * sizeof(capnp::word);
    if (total > limits.max_frame_bytes) return {ScanStatus::too_large, total};
    if (bytes.size() < total) return {ScanStatus::incomplete, total};
    return {ScanStatus::complete, total};
}

capnp::ReaderOptions reader_options(const FrameLimits& limits) {
    capnp::ReaderOptions options;
    // Generous for honest readers that look at a field many times, yet bounded against
    // frames whose pointers alias one another to amplify work.
    options.traversalLimitInWords = limits.max_frame_bytes / sizeof(capnp::word) * 64;
    options.nestingLimit = k_max_nesting;
    return options;
}

std::optional<std::string> check_message(schema::Message::Reader root) {
    try {
        // Touching a pointer is what bounds-checks it; the values themselves are not needed.
        (void)root.getId();
        (void)root.getSource();
        (void)root.getGateway();
        (void)root.getKind();
        (void)root.getBody();
        for (auto field : root.getFields()) {
            (void)field.getName();
            auto value = field.getValue();
            switch (value.which()) {
                case schema::Field::Value::TEXT: (void)value.getText(); break;
                case schema::Field::Value::JSON: (void)value.getJson(); break;
                case schema::Field::Value::FLOAT:
                case schema::Field::Value::INT:
                case schema::Field::Value::BOOL: break;
                default: return std::string("unknown field value type");
            }
        }
        switch (root.getControl().which()) {
            case schema::Message::Control::NONE: break;
            case schema::Message::Control::BARRIER: (void)root.getControl().getBarrier(); break;
            default: return std::string("unknown control frame type");
        }
        return std::nullopt;
    } catch (const kj::Exception& e) {
        return std::string(e.getDescription().cStr());
    }
}

std::optional<std::string> check_frame(const Frame& frame, const FrameLimits& limits) {
    // mh's own layout is judged whole by one pass, as the opener would judge it first:
    // no opener to make and no reader to start for the frames every mh writer sends.
    if (frame.byte_count() <= limits.max_frame_bytes && read_message_view(frame, nullptr))
        return std::nullopt;
    return FrameOpener(limits).open_checked(frame);
}

void append_frame(capnp::MessageBuilder& message, std::vector<std::byte>& out) {
    auto segments = message.getSegmentsForOutput();
    size_t header = table_bytes(static_cast<uint32_t>(segments.size()));
    size_t total = header;
    for (auto& segment : segments) total += segment.size() * sizeof(capnp::word);

    size_t start = out.size();
    out.resize(start + total);
    std::byte* p = out.data() + start;
    std::memset(p, 0, header);
    uint32_t count_minus_one = static_cast<uint32_t>(segments.size() - 1);
    std::memcpy(p, &count_minus_one, 4);
    for (size_t i = 0; i < segments.size(); ++i) {
        uint32_t words = static_cast<uint32_t>(segments[i].size());
        std::memcpy(p + 4 + 4 * i, &words, 4);
    }
    p += header;
    for (auto& segment : segments) {
        std::memcpy(p, segment.begin(), segment.size() * sizeof(capnp::word));
        p += segment.size() * sizeof(capnp::word);
    }
}

}  // namespace mh::wire
