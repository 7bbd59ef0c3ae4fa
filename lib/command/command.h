// Commands to machines and what becomes of them, as messages (the cloud hubs' lifecycle):
//
//   command          kind "command", `gateway` = the gateway it goes to, `source` = the device
//                    behind it (optional). Fields the endpoint reads:
//                      correlation_id  text (an integer is taken as its decimal text): the id
//                                      replies and statuses carry; absent = the message id in
//                                      its 8-4-4-4-12 text, and a message without an id gets a
//                                      fresh one. The delivered command always has the field.
//                      expires         when it may no longer be delivered: integer ns or
//                                      RFC 3339 text
//                      ttl             how long it may wait: a duration ("90s", "5m", "1d") or a
//                                      number of seconds. With both, the earlier wins; with
//                                      neither, the endpoint's --command-ttl.
//                      command         its name (mh-notify --command sets it): copied to statuses
//   command-status   what the endpoint says about one command, on its output: `gateway`,
//                    `source` as the command's, fields correlation_id, status (queued,
//                    delivered, acknowledged, expired, refused, dropped), command (its name),
//                    reason (refused, expired, dropped), protocol (delivered: mqtt, native,
//                    https), expires (queued, integer ns), matched (acknowledged: whether the
//                    reply's correlation id was one of a command delivered and not yet
//                    acknowledged), and the reply's own fields as reply.<name>.
//   command-reply    a device's answer (MQTT replies/<gw>[/<source>] with a JSON object, HTTPS
//                    POST /v1/replies, a native frame of this kind): correlation_id and any
//                    result fields.
//
// Pure functions of a frame: no I/O, so the fuzzer reaches them (fuzz/command_fuzz.cpp).
#pragma once

#include "message/id.h"
#include "schema/message.capnp.h"
#include "wire/frame.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::command {

constexpr std::string_view k_command_kind = "command";
constexpr std::string_view k_status_kind = "command-status";
constexpr std::string_view k_reply_kind = "command-reply";
constexpr std::string_view k_correlation_field = "correlation_id";
constexpr std::string_view k_expires_field = "expires";
constexpr std::string_view k_ttl_field = "ttl";
constexpr std::string_view k_name_field = "command";
constexpr std::string_view k_reply_prefix = "reply.";
constexpr size_t k_max_correlation_bytes = 128;

enum class Status { queued, delivered, acknowledged, expired, refused, dropped };
constexpr Status k_all_statuses[] = {Status::queued,  Status::delivered, Status::acknowledged,
                                     Status::expired, Status::refused,   Status::dropped};
std::string_view status_name(Status status);

// What the statuses of one command say about it.
struct Ref {
    std::string correlation_id, gateway, source, name;
};

// A command from the command input, made ready to deliver, or why it cannot be.
struct Prepared {
    Ref ref;                        // as much as could be read, also when refused
    std::vector<std::byte> frame;   // the command as delivered (correlation_id set); empty when refused
    int64_t expires_ns = 0;
    std::string refusal;            // empty: ready
    bool control = false;           // a control frame (a checkpoint barrier): no command, passed over
};

// Reads and checks a command frame (untrusted: checked pointer by pointer under `limits`).
// `ids` makes the id of a command that has none.
Prepared prepare(const wire::Frame& frame, int64_t now_ns, int64_t default_ttl_ns, const wire::FrameLimits& limits,
                 IdGenerator& ids);

// The Ref of a frame prepare() made (as stored in a queue).
Ref describe(const wire::Frame& frame);

// Whether `text` may be a correlation id: 1..k_max_correlation_bytes printable ASCII.
std::optional<std::string> check_correlation_id(std::string_view text);

// The correlation id of a reply, or why it has none usable.
struct ReplyId {
    std::string correlation_id;
    std::string refusal;  // empty when correlation_id is good
};
ReplyId reply_id(schema::Message::Reader reply);

// What a status message says beyond its Ref.
struct StatusDetail {
    std::string_view reason;
    std::string_view protocol;
    std::optional<bool> matched;
    int64_t expires_ns = 0;                          // 0: not said
    std::optional<schema::Message::Reader> reply;    // its fields become reply.<name>, its body the body
};

// Builds a command-status message into `out` (one frame appended).
void build_status(const Ref& ref, Status status, int64_t now_ns, const MessageId& id, const StatusDetail& detail,
                  std::vector<std::byte>& out);

}  // namespace mh::command
