// A notification is itself a message: kind "notification", the alert's source and gateway,
// and fields state, incident, rule, count, opened, text and message (the alert as JSON).
// --out writes it as a frame; webhooks and --exec get it as JSON (lib/json), so both forms
// say the same thing:
//   {"id":"...","time":...,"source":"sensor-1","gateway":"gw-1","kind":"notification",
//    "state":"open","incident":"hot/sensor-1","rule":"hot","count":1,"opened":"2026-...Z",
//    "text":"sensor-1: 31.5 °C","message":{"id":"...","kind":"alert",...}}
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "json/json_codec.h"
#include "message/id.h"
#include "message/scratch_builder.h"
#include "notify/incident.h"
#include "notify/template.h"
#include "wire/frame.h"

namespace mh::notify {

constexpr std::string_view k_notification_kind = "notification";
constexpr std::string_view k_command_kind = "command";

// The same incident and event number always give the same id: a receiver that sees a
// notification twice (a retry after a lost answer) can tell.
MessageId notification_id(std::string_view key, int64_t opened_ns, uint64_t number);

// Builds notifications; one per thread (it reuses a builder and an encoder).
class NotificationBuilder {
  public:
    NotificationBuilder(const Template& text, wire::FrameLimits limits)
        : m_text(text), m_limits(limits) {}

    // Appends the notification for `told` at `now_ns` to `out` as a frame.
    void build(const Told& told, int64_t now_ns, std::vector<std::byte>& out);

  private:
    const Template& m_text;
    wire::FrameLimits m_limits;
    ScratchBuilder m_builder;
    JsonEncoder m_encoder;
    std::string m_json;
};

// Reading a notification (or any message) back: a field as text ("" when absent), ints and
// floats as JSON writes them.
std::string field_text(schema::Message::Reader message, std::string_view name);

// A copy of `frame` with text fields appended (the dead-letter's reason, sink, attempts).
void append_with_fields(const wire::Frame& frame,
                        const std::vector<std::pair<std::string, std::string>>& fields,
                        wire::FrameLimits limits, std::vector<std::byte>& out);

// Frame bytes from storage (LMDB values are not word aligned) copied into words.
std::vector<capnp::word> aligned_words(std::span<const std::byte> bytes);

}  // namespace mh::notify
