#include "notify/notification.h"

#include <capnp/serialize.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "filter/hash.h"
#include "message/time.h"

namespace mh::notify {
namespace {

std::string_view view(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

void set_text(schema::Field::Builder field, std::string_view name, std::string_view text) {
    field.setName(capnp::Text::Reader(name.data(), name.size()));
    field.getValue().setText(capnp::Text::Reader(text.data(), text.size()));
}

}  // namespace

MessageId notification_id(std::string_view key, int64_t opened_ns, uint64_t number) {
    using filter::mix64;
    MessageId id{};
    auto ms = static_cast<uint64_t>(opened_ns / k_ns_per_ms);
    for (int i = 0; i < 6; ++i) id[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
    uint64_t h =
        mix64(filter::hash_text(key) ^ mix64(static_cast<uint64_t>(opened_ns)) ^ mix64(number + 1));
    uint64_t h2 = mix64(h + number);
    id[6] = static_cast<uint8_t>(0x70 | ((h >> 8) & 0x0f));  // version 7
    id[7] = static_cast<uint8_t>(h);
    for (int i = 0; i < 8; ++i) id[8 + i] = static_cast<uint8_t>(h2 >> (56 - 8 * i));
    id[8] = static_cast<uint8_t>((id[8] & 0x3f) | 0x80);  // variant 10
    return id;
}

void NotificationBuilder::build(const Told& told, int64_t now_ns, std::vector<std::byte>& out) {
    auto words = aligned_words(told.incident.last_frame);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()),
                                         wire::reader_options(m_limits));
    auto alert = reader.getRoot<schema::Message>();

    const Incident& incident = told.incident;
    std::string state(event_name(told.event));
    std::string opened = format_rfc3339(incident.opened_ns);
    std::string shown_key = display_key(told.key);
    auto lookup = [&](std::string_view name) -> TemplateValue {
        TemplateValue value;
        if (name == "state" || name == "incident" || name == "opened") {
            value.type = TemplateValue::Type::text;
            value.text = name == "state" ? state : name == "incident" ? shown_key : opened;
            return value;
        }
        if (name == "count") {
            value.type = TemplateValue::Type::integer;
            value.integer = static_cast<int64_t>(incident.count);
            return value;
        }
        return message_value(alert, name);
    };
    std::string text = m_text.render(lookup);

    m_json.clear();
    m_encoder.encode(alert, m_json);
    while (!m_json.empty() && m_json.back() == '\n') m_json.pop_back();

    uint64_t number = told.event == Event::resolved ? UINT64_MAX : incident.notifications;
    MessageId id = notification_id(told.key, incident.opened_ns, number);
    auto message = m_builder.start();
    message.setId(capnp::Data::Reader(id.data(), id.size()));
    message.setTime(now_ns);
    if (alert.hasSource()) message.setSource(alert.getSource());
    if (alert.hasGateway()) message.setGateway(alert.getGateway());
    message.setKind(capnp::Text::Reader(k_notification_kind.data(), k_notification_kind.size()));
    std::string rule = field_text(alert, "rule");
    auto fields = message.initFields(rule.empty() ? 6 : 7);
    unsigned k = 0;
    set_text(fields[k++], "state", state);
    set_text(fields[k++], "incident", shown_key);
    if (!rule.empty()) set_text(fields[k++], "rule", rule);
    fields[k].setName("count");
    fields[k++].getValue().setInt(static_cast<int64_t>(incident.count));
    set_text(fields[k++], "opened", opened);
    set_text(fields[k++], "text", text);
    fields[k].setName("message");
    fields[k++].getValue().setJson(capnp::Text::Reader(m_json.data(), m_json.size()));
    wire::append_frame(m_builder.builder(), out);
}

std::string field_text(schema::Message::Reader message, std::string_view name) {
    for (auto field : message.getFields()) {
        if (view(field.getName()) != name) continue;
        auto value = field.getValue();
        switch (value.which()) {
            case schema::Field::Value::FLOAT: {
                std::string out;
                json::append_float(out, value.getFloat());
                return out;
            }
            case schema::Field::Value::INT:
                return fmt::format("{}", value.getInt());
            case schema::Field::Value::TEXT:
                return std::string(view(value.getText()));
            case schema::Field::Value::BOOL:
                return value.getBool() ? "true" : "false";
            case schema::Field::Value::JSON:
                return std::string(view(value.getJson()));
        }
    }
    return {};
}

void append_with_fields(const wire::Frame& frame,
                        const std::vector<std::pair<std::string, std::string>>& extra,
                        wire::FrameLimits limits, std::vector<std::byte>& out) {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                         wire::reader_options(limits));
    auto original = reader.getRoot<schema::Message>();
    capnp::MallocMessageBuilder builder;
    builder.setRoot(original);
    auto message = builder.getRoot<schema::Message>();
    auto old_fields = original.getFields();
    auto fields = message.initFields(old_fields.size() + static_cast<unsigned>(extra.size()));
    unsigned k = 0;
    for (auto field : old_fields) fields.setWithCaveats(k++, field);
    for (const auto& [name, text] : extra) set_text(fields[k++], name, text);
    wire::append_frame(builder, out);
}

std::vector<capnp::word> aligned_words(std::span<const std::byte> bytes) {
    std::vector<capnp::word> words((bytes.size() + sizeof(capnp::word) - 1) / sizeof(capnp::word));
    if (!bytes.empty()) std::memcpy(words.data(), bytes.data(), bytes.size());
    return words;
}

}  // namespace mh::notify
