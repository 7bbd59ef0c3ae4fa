#include "gen/message_template.h"

#include "core/error.h"

#include <cstring>
#include <string>

namespace mh::gen {
namespace {

constexpr size_t k_fixed_words = 64;  // root struct, id, kind, label and slack
constexpr size_t k_words_per_field = 4 + (k_max_field_name_chars + 8) / sizeof(capnp::word);

std::string placeholder(size_t chars) { return std::string(chars, '-'); }

}  // namespace

MessageTemplate::MessageTemplate(const std::vector<FieldSpec>& fields, std::string_view kind,
                                 size_t source_chars, size_t gateway_chars, std::string_view label)
    : m_source_chars(source_chars), m_gateway_chars(gateway_chars) {
    const size_t text_words = (source_chars + gateway_chars + kind.size() + label.size()) / sizeof(capnp::word) + 8;
    const size_t segment_words = k_fixed_words + text_words + (fields.size() + 1) * k_words_per_field;
    // Zeroed, as a first segment given to MallocMessageBuilder must be.
    m_words.reset(new capnp::word[1 + segment_words]());
    m_builder.emplace(kj::arrayPtr(m_words.get() + 1, segment_words), capnp::AllocationStrategy::FIXED_SIZE);

    m_root = m_builder->initRoot<schema::Message>();
    m_id = m_root.initId(sizeof(MessageId)).begin();
    m_root.setSource(placeholder(source_chars));
    m_root.setGateway(placeholder(gateway_chars));
    m_root.setKind(capnp::Text::Reader(kind.data(), kind.size()));
    m_source = m_root.getSource().begin();
    m_gateway = m_root.getGateway().begin();

    auto list = m_root.initFields(static_cast<unsigned>(fields.size() + (label.empty() ? 0 : 1)));
    for (size_t f = 0; f < fields.size(); ++f) {
        auto field = list[static_cast<unsigned>(f)];
        field.setName(fields[f].name);
        if (fields[f].is_int())
            field.getValue().setInt(0);
        else
            field.getValue().setFloat(0);
        m_values.push_back(field.getValue());
        m_is_int.push_back(fields[f].is_int());
    }
    if (!label.empty()) {
        auto field = list[static_cast<unsigned>(fields.size())];
        field.setName("anomaly");
        field.getValue().setText(capnp::Text::Reader(label.data(), label.size()));
    }

    auto segments = m_builder->getSegmentsForOutput();
    // Our own sizing: a second segment would break the one-run-of-words layout.
    if (segments.size() != 1 || segments[0].begin() != m_words.get() + 1)
        throw Error(ExitCode::software, "message template does not fit its first segment");
    const uint32_t table[2] = {0, static_cast<uint32_t>(segments[0].size())};  // segment count - 1, words
    std::memcpy(m_words.get(), table, sizeof(table));
    m_frame_words = 1 + segments[0].size();
}

wire::Frame MessageTemplate::fill(const MessageId& id, int64_t time_ns, const char* source, const char* gateway,
                                  std::span<const double> values) {
    std::memcpy(m_id, id.data(), id.size());
    m_root.setTime(time_ns);
    m_root.setIngested(time_ns);  // mh-gen stands in for the endpoint that would accept it
    std::memcpy(m_source, source, m_source_chars);
    std::memcpy(m_gateway, gateway, m_gateway_chars);
    for (size_t f = 0; f < m_values.size(); ++f) {
        if (m_is_int[f])
            m_values[f].setInt(static_cast<int64_t>(values[f]));
        else
            m_values[f].setFloat(values[f]);
    }
    return wire::Frame{m_words.get(), m_frame_words};
}

}  // namespace mh::gen
