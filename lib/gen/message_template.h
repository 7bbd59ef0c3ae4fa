// A frame built once and patched in place for every message: mh-gen's messages all
// have the same layout (fixed-width names, the same fields in the same order), so only
// the id, times, name characters and field values change. Patching a few words is far
// cheaper than building a Cap'n Proto message per frame, and allocates nothing.
#pragma once

#include "gen/field_spec.h"
#include "message/id.h"
#include "schema/message.capnp.h"
#include "wire/frame.h"

#include <capnp/message.h>

#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace mh::gen {

class MessageTemplate {
public:
    // `label`, when not empty, becomes a last text field named "anomaly".
    MessageTemplate(const std::vector<FieldSpec>& fields, std::string_view kind, size_t source_chars,
                    size_t gateway_chars, std::string_view label);
    MessageTemplate(const MessageTemplate&) = delete;
    MessageTemplate& operator=(const MessageTemplate&) = delete;

    // Writes one message's variable parts and returns the whole frame, valid until the
    // next fill(). `source` and `gateway` point at exactly the widths given above;
    // `values` has one entry per field (int fields take whole numbers).
    wire::Frame fill(const MessageId& id, int64_t time_ns, const char* source, const char* gateway,
                     std::span<const double> values);

    size_t frame_bytes() const { return m_frame_words * sizeof(capnp::word); }

private:
    // Word 0 is the stream framing's segment table (one segment), the rest is the
    // message's only segment, so a frame is one contiguous run of words.
    std::unique_ptr<capnp::word[]> m_words;
    std::optional<capnp::MallocMessageBuilder> m_builder;
    schema::Message::Builder m_root{nullptr};
    kj::byte* m_id = nullptr;
    char* m_source = nullptr;
    char* m_gateway = nullptr;
    size_t m_source_chars, m_gateway_chars;
    std::vector<schema::Field::Value::Builder> m_values;
    std::vector<bool> m_is_int;
    size_t m_frame_words = 0;
};

}  // namespace mh::gen
