// Commands, replies and statuses as messages (see command.h).
#include "command/command.h"

#include "json/json_codec.h"
#include "message/time.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace mh::command {

namespace {

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }
std::string_view view(capnp::Text::Reader t) { return std::string_view(t.cStr(), t.size()); }
capnp::Text::Reader as_text(std::string_view s) { return capnp::Text::Reader(s.data(), s.size()); }

std::optional<schema::Field::Reader> find_field(schema::Message::Reader message, std::string_view name) {
    if (!message.hasFields()) return std::nullopt;
    for (auto field : message.getFields())
        if (view(field.getName()) == name) return field;
    return std::nullopt;
}

std::string id_text(capnp::Data::Reader id) {
    if (id.size() != 16) return {};
    char out[k_id_text_chars];
    format_id(std::span<const uint8_t>(id.begin(), id.size()), out);
    return std::string(out, k_id_text_chars);
}

// The field's value as text when it has a text or integer form.
std::optional<std::string> scalar_text(schema::Field::Reader field) {
    auto value = field.getValue();
    switch (value.which()) {
        case schema::Field::Value::TEXT: return text(value.getText());
        case schema::Field::Value::INT: return std::to_string(value.getInt());
        default: return std::nullopt;
    }
}

int64_t saturating_add(int64_t a, int64_t b) {
    if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) return std::numeric_limits<int64_t>::max();
    return a + b;
}

// Seconds (a JSON number) as nanoseconds, or nullopt when negative, not finite or too large.
std::optional<int64_t> seconds_ns(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 9e9) return std::nullopt;
    return static_cast<int64_t>(seconds * static_cast<double>(k_ns_per_second));
}

}  // namespace

std::string_view status_name(Status status) {
    switch (status) {
        case Status::queued: return "queued";
        case Status::delivered: return "delivered";
        case Status::acknowledged: return "acknowledged";
        case Status::expired: return "expired";
        case Status::refused: return "refused";
        case Status::dropped: return "dropped";
    }
    return "?";
}

std::optional<std::string> check_correlation_id(std::string_view id) {
    if (id.empty()) return "correlation_id is empty";
    if (id.size() > k_max_correlation_bytes)
        return fmt::format("correlation_id is longer than {} bytes", k_max_correlation_bytes);
    for (char c : id)
        if (c <= ' ' || c > '~') return "correlation_id must be printable ASCII without spaces";
    return std::nullopt;
}

namespace {

// The fields prepare() reads, found in one pass (a frame whose pointers alias one another
// makes every pass costly: the reader's traversal limit bounds them all together).
struct CommandFields {
    std::optional<schema::Field::Reader> name, correlation, expires, ttl;
};

CommandFields command_fields(schema::Message::Reader in) {
    CommandFields out;
    if (!in.hasFields()) return out;
    for (auto field : in.getFields()) {
        std::string_view name = view(field.getName());
        auto take = [&](std::optional<schema::Field::Reader>& slot) {
            if (!slot) slot = field;
        };
        if (name == k_name_field) take(out.name);
        else if (name == k_correlation_field) take(out.correlation);
        else if (name == k_expires_field) take(out.expires);
        else if (name == k_ttl_field) take(out.ttl);
    }
    return out;
}

void read_command(const wire::Frame& frame, int64_t now_ns, int64_t default_ttl_ns, const wire::FrameLimits& limits,
                  IdGenerator& ids, Prepared& p) {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count), wire::reader_options(limits));
    auto in = reader.getRoot<schema::Message>();
    p.ref.gateway = text(in.getGateway());
    p.ref.source = text(in.getSource());
    CommandFields fields = command_fields(in);
    if (fields.name) p.ref.name = scalar_text(*fields.name).value_or("");

    bool has_correlation = false;
    if (fields.correlation) {
        auto id = scalar_text(*fields.correlation);
        if (!id) {
            p.refusal = "correlation_id must be text";
            return;
        }
        if (auto why = check_correlation_id(*id)) {
            p.refusal = *why;
            return;
        }
        p.ref.correlation_id = *id;
        has_correlation = true;
    }
    std::optional<MessageId> fresh_id;
    if (!has_correlation) {
        p.ref.correlation_id = id_text(in.getId());
        if (p.ref.correlation_id.empty()) {
            fresh_id = ids.next(now_ns);
            char out[k_id_text_chars];
            format_id(*fresh_id, out);
            p.ref.correlation_id.assign(out, k_id_text_chars);
        }
    }
    if (in.getControl().which() != schema::Message::Control::NONE) {
        p.control = true;
        p.refusal = "a control frame is not a command";
        return;
    }
    if (view(in.getKind()) != k_command_kind) {
        p.refusal = fmt::format("kind is \"{}\", not \"command\"", view(in.getKind()));
        return;
    }
    if (p.ref.gateway.empty()) {
        p.refusal = "no gateway: a command is addressed by its gateway field";
        return;
    }

    std::optional<int64_t> expires;
    if (fields.expires) {
        auto value = fields.expires->getValue();
        if (value.isInt()) expires = value.getInt();
        else if (value.isText()) expires = json::parse_time_text(view(value.getText()));
        if (!expires) {
            p.refusal = "expires: expected integer nanoseconds or RFC 3339 text";
            return;
        }
    }
    if (fields.ttl) {
        auto value = fields.ttl->getValue();
        std::optional<int64_t> ttl;
        if (value.isText()) ttl = parse_duration_ns(view(value.getText()));
        else if (value.isInt()) ttl = seconds_ns(static_cast<double>(value.getInt()));
        else if (value.isFloat()) ttl = seconds_ns(value.getFloat());
        if (!ttl || *ttl < 0) {
            p.refusal = "ttl: expected a duration such as 90s, 5m or 1d, or a number of seconds";
            return;
        }
        int64_t at = saturating_add(now_ns, *ttl);
        expires = expires ? std::min(*expires, at) : at;
    }
    p.expires_ns = expires ? *expires : saturating_add(now_ns, default_ttl_ns);

    // The command as delivered, written afresh (what is delivered is a frame of our own
    // making, whatever layout came in), with correlation_id (and the id it lacked) added.
    capnp::MallocMessageBuilder builder;
    auto out = builder.initRoot<schema::Message>();
    if (fresh_id) out.setId(kj::arrayPtr(fresh_id->data(), fresh_id->size()));
    else out.setId(in.getId());
    out.setTime(in.getTime());
    out.setIngested(in.getIngested());
    if (in.hasSource()) out.setSource(in.getSource());
    out.setGateway(in.getGateway());
    out.setKind(in.getKind());
    unsigned count = in.hasFields() ? in.getFields().size() : 0;
    auto list = out.initFields(count + (has_correlation ? 0 : 1));
    if (count) {
        auto from = in.getFields();
        for (unsigned i = 0; i < count; ++i) list.setWithCaveats(i, from[i]);
    }
    if (!has_correlation) {
        list[count].setName(as_text(k_correlation_field));
        list[count].getValue().setText(as_text(p.ref.correlation_id));
    }
    if (in.hasBody()) out.setBody(in.getBody());
    wire::append_frame(builder, p.frame);
    if (p.frame.size() > limits.max_frame_bytes) {
        p.frame.clear();
        p.refusal = fmt::format("more than {} bytes once read", limits.max_frame_bytes);
    }
}

}  // namespace

Prepared prepare(const wire::Frame& frame, int64_t now_ns, int64_t default_ttl_ns, const wire::FrameLimits& limits,
                 IdGenerator& ids) {
    Prepared p;
    if (auto why = wire::check_frame(frame, limits)) {
        p.refusal = "a garbled command frame: " + *why;
        return p;
    }
    try {
        read_command(frame, now_ns, default_ttl_ns, limits, ids, p);
    } catch (const kj::Exception& e) {
        // Past check_frame, only a frame built to make reading it costly gets here.
        p.frame.clear();
        p.refusal = fmt::format("a command frame that cannot be read: {}", e.getDescription().cStr());
    }
    if (!p.refusal.empty()) p.frame.clear();
    return p;
}

Ref describe(const wire::Frame& frame) {
    Ref ref;
    try {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
        auto in = reader.getRoot<schema::Message>();
        ref.gateway = text(in.getGateway());
        ref.source = text(in.getSource());
        CommandFields fields = command_fields(in);
        if (fields.correlation) ref.correlation_id = scalar_text(*fields.correlation).value_or("");
        if (ref.correlation_id.empty()) ref.correlation_id = id_text(in.getId());
        if (fields.name) ref.name = scalar_text(*fields.name).value_or("");
    } catch (const kj::Exception&) {
        // Only frames prepare() wrote are described: what was read is what there is.
    }
    return ref;
}

ReplyId reply_id(schema::Message::Reader reply) {
    ReplyId out;
    try {
        auto field = find_field(reply, k_correlation_field);
        if (!field) {
            out.refusal = "a reply needs correlation_id (the command's)";
            return out;
        }
        auto id = scalar_text(*field);
        if (!id) {
            out.refusal = "correlation_id must be text";
            return out;
        }
        if (auto why = check_correlation_id(*id)) {
            out.refusal = *why;
            return out;
        }
        out.correlation_id = std::move(*id);
    } catch (const kj::Exception& e) {
        out.refusal = fmt::format("a reply that cannot be read: {}", e.getDescription().cStr());
    }
    return out;
}

namespace {

void write_status(const Ref& ref, Status status, int64_t now_ns, const MessageId& id, const StatusDetail& detail,
                  std::vector<std::byte>& out) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    m.setId(kj::arrayPtr(id.data(), id.size()));
    m.setTime(now_ns);
    m.setIngested(now_ns);
    if (!ref.source.empty()) m.setSource(as_text(ref.source));
    if (!ref.gateway.empty()) m.setGateway(as_text(ref.gateway));
    m.setKind(as_text(k_status_kind));

    std::vector<schema::Field::Reader> reply_fields;
    if (detail.reply && detail.reply->hasFields())
        for (auto field : detail.reply->getFields())
            if (view(field.getName()) != k_correlation_field) reply_fields.push_back(field);
    unsigned count = 1 + (ref.correlation_id.empty() ? 0 : 1) + (ref.name.empty() ? 0 : 1) +
                     (detail.reason.empty() ? 0 : 1) + (detail.protocol.empty() ? 0 : 1) +
                     (detail.matched ? 1 : 0) + (detail.expires_ns ? 1 : 0) +
                     static_cast<unsigned>(reply_fields.size());
    auto fields = m.initFields(count);
    unsigned at = 0;
    auto add_text = [&](std::string_view name, std::string_view value) {
        fields[at].setName(as_text(name));
        fields[at++].getValue().setText(as_text(value));
    };
    if (!ref.correlation_id.empty()) add_text(k_correlation_field, ref.correlation_id);
    add_text("status", status_name(status));
    if (!ref.name.empty()) add_text(k_name_field, ref.name);
    if (!detail.reason.empty()) add_text("reason", detail.reason);
    if (!detail.protocol.empty()) add_text("protocol", detail.protocol);
    if (detail.matched) {
        fields[at].setName("matched");
        fields[at++].getValue().setBool(*detail.matched);
    }
    if (detail.expires_ns) {
        fields[at].setName(as_text(k_expires_field));
        fields[at++].getValue().setInt(detail.expires_ns);
    }
    std::string name;
    for (auto field : reply_fields) {
        name.assign(k_reply_prefix);
        name.append(field.getName().cStr(), field.getName().size());
        fields.setWithCaveats(at, field);
        fields[at++].setName(as_text(name));
    }
    if (detail.reply && detail.reply->hasBody()) m.setBody(detail.reply->getBody());
    wire::append_frame(builder, out);
}

}  // namespace

void build_status(const Ref& ref, Status status, int64_t now_ns, const MessageId& id, const StatusDetail& detail,
                  std::vector<std::byte>& out) {
    size_t before = out.size();
    try {
        write_status(ref, status, now_ns, id, detail, out);
    } catch (const kj::Exception&) {
        // The reply's fields could not be copied (a frame built to be costly to read): the
        // status goes out without them.
        out.resize(before);
        StatusDetail plain = detail;
        plain.reply.reset();
        if (plain.reason.empty()) plain.reason = "the reply's fields could not be read";
        write_status(ref, status, now_ns, id, plain, out);
    }
}

}  // namespace mh::command
