#include "endpoint/ingest.h"

#include "wire/frame.h"
#include "wire/message_view.h"

#include <capnp/serialize.h>

#include <cstring>

namespace mh::endpoint {

std::string_view verdict_reason(Verdict verdict) {
    switch (verdict) {
        case Verdict::accepted: return "accepted";
        case Verdict::malformed: return reason::malformed;
        case Verdict::source: return reason::source;
        case Verdict::quota: return reason::quota;
        case Verdict::oversized: return reason::oversized;
    }
    return "?";
}

IngestCounters::IngestCounters(metrics::Registry& registry)
    : messages_in(registry.counter("mh_messages_in_total", "Messages received from gateways")),
      bytes_in(registry.counter("mh_bytes_in_total", "Bytes of messages received from gateways")),
      messages_out(registry.counter("mh_messages_out_total", "Messages written to the output: accepted ones and command statuses")),
      bytes_out(registry.counter("mh_bytes_out_total", "Frame bytes written to the output")) {}

Ingest::Ingest(wire::FrameSink& sink, const Gatekeeper& gatekeeper, wire::FrameLimits limits,
               metrics::Registry& registry, uint64_t seed)
    : m_sink(sink), m_gatekeeper(&gatekeeper), m_limits(limits), m_counters(registry), m_ids(seed) {}

bool Ingest::allowed(GatewayState& gateway, std::string_view source) {
    if (const bool* known = gateway.may_publish.find(source)) return *known;
    bool ok = m_gatekeeper->may_publish(gateway.id, source);
    gateway.may_publish.remember(source, ok);
    return ok;
}

Verdict Ingest::frame(GatewayState& gateway, const wire::Frame& frame, int64_t now_ns, Overrides overrides,
                      bool checked) {
    ++m_pending.messages_in;
    m_pending.bytes_in += frame.byte_count();
    if (frame.byte_count() > m_limits.max_frame_bytes) return Verdict::oversized;
    // A frame in mh's own layout (all that mh writers and the JSON decoder produce) is read
    // as views, judged whole by the walk, and written again stamped, without Cap'n Proto.
    if (wire::read_message_view(frame, &m_view)) return stamp(gateway, &frame, frame.byte_count(), now_ns, overrides);
    // Any other frame (several segments, another schema's sizes): judged and copied by Cap'n Proto.
    if (!checked && wire::check_frame(frame, m_limits)) return Verdict::malformed;
    capnp::FlatArrayMessageReader message(kj::arrayPtr(frame.words, frame.word_count),
                                          wire::reader_options(m_limits));
    auto in = message.getRoot<schema::Message>();
    if (in.getControl().which() != schema::Message::Control::NONE) return Verdict::malformed;  // barriers are ours
    // Every way through frame() must look at the divert before a message is stamped (a
    // faster path for some layouts included), or replies would pass as telemetry.
    if (m_divert && overrides.kind.empty() &&
        std::string_view(in.getKind().cStr(), in.getKind().size()) == m_divert_kind)
        return m_divert(gateway, frame);
    std::string_view source = overrides.source.empty() ? std::string_view(in.getSource().cStr(), in.getSource().size())
                                                       : overrides.source;
    if (!allowed(gateway, source)) return Verdict::source;
    if (!gateway.messages.take(1, now_ns)) return Verdict::quota;
    if (!gateway.bytes.take(static_cast<double>(frame.byte_count()), now_ns)) return Verdict::quota;

    auto out = m_builder.start();
    MessageId id = m_ids.next(now_ns);
    out.setId(kj::arrayPtr(id.data(), id.size()));
    out.setTime(in.getTime() != 0 ? in.getTime() : now_ns);
    out.setIngested(now_ns);
    out.setSource(capnp::Text::Reader(source.data(), source.size()));
    out.setGateway(capnp::Text::Reader(gateway.id.data(), gateway.id.size()));
    if (overrides.kind.empty())
        out.setKind(in.getKind());
    else
        out.setKind(capnp::Text::Reader(overrides.kind.data(), overrides.kind.size()));
    if (in.hasFields()) out.setFields(in.getFields());
    if (in.hasBody()) out.setBody(in.getBody());
    m_out.clear();
    wire::append_frame(m_builder.builder(), m_out);
    return write(m_out);
}

Verdict Ingest::stamp(GatewayState& gateway, const wire::Frame* original, size_t frame_bytes, int64_t now_ns,
                      Overrides overrides) {
    if (m_view.barrier) return Verdict::malformed;  // barriers are ours
    // The divert first, as on the Cap'n Proto path; a message read from JSON has no frame
    // yet: the one decode() would have written is made for it.
    if (m_divert && overrides.kind.empty() && m_view.kind == m_divert_kind) {
        if (original) return m_divert(gateway, *original);
        m_diverted.clear();
        wire::append_message_view(m_view, m_diverted);
        return m_divert(gateway, wire::Frame{reinterpret_cast<const capnp::word*>(m_diverted.data()),
                                             m_diverted.size() / sizeof(capnp::word)});
    }
    if (!overrides.source.empty()) m_view.source = overrides.source;
    if (!allowed(gateway, m_view.source)) return Verdict::source;
    if (!gateway.messages.take(1, now_ns)) return Verdict::quota;
    if (!gateway.bytes.take(static_cast<double>(frame_bytes), now_ns)) return Verdict::quota;
    m_id = m_ids.next(now_ns);
    m_view.id = std::string_view(reinterpret_cast<const char*>(m_id.data()), m_id.size());
    if (m_view.time == 0) m_view.time = now_ns;
    m_view.ingested = now_ns;
    m_view.gateway = gateway.id;
    if (!overrides.kind.empty()) m_view.kind = overrides.kind;
    // Written where the sink keeps its output when it lets us: one copy fewer per message.
    if (std::vector<std::byte>* buffer = m_sink.frame_buffer()) {
        size_t start = buffer->size();
        wire::append_message_view(m_view, *buffer);
        size_t bytes = buffer->size() - start;
        m_sink.commit();
        return accepted(bytes);
    }
    m_out.clear();
    wire::append_message_view(m_view, m_out);
    return write(m_out);
}

Verdict Ingest::write(const std::vector<std::byte>& bytes) {
    wire::Frame stamped{reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / sizeof(capnp::word)};
    m_sink.write(stamped);
    return accepted(stamped.byte_count());
}

Verdict Ingest::accepted(size_t bytes) {
    m_dirty = true;
    ++m_pending.messages_out;
    m_pending.bytes_out += bytes;
    return Verdict::accepted;
}

Verdict Ingest::json(GatewayState& gateway, std::string_view text, int64_t now_ns, Overrides overrides,
                     std::string* error) {
    if (text.size() > m_limits.max_frame_bytes) {
        ++m_pending.messages_in;
        return Verdict::oversized;
    }
    // Read into views and stamped straight from them: no frame of the JSON is written. What
    // is counted and charged is the frame the JSON makes (what decode() would have written).
    if (auto why = m_decoder.decode_view(text, m_view)) {
        ++m_pending.messages_in;
        if (error) *error = *why;
        return Verdict::malformed;
    }
    size_t bytes = wire::message_view_bytes(m_view);
    ++m_pending.messages_in;
    m_pending.bytes_in += bytes;
    if (bytes > m_limits.max_frame_bytes) return Verdict::oversized;
    return stamp(gateway, nullptr, bytes, now_ns, overrides);
}

bool Ingest::flush() {
    if (m_pending.messages_in || m_pending.messages_out) {
        m_counters.messages_in.add(m_pending.messages_in);
        m_counters.bytes_in.add(m_pending.bytes_in);
        m_counters.messages_out.add(m_pending.messages_out);
        m_counters.bytes_out.add(m_pending.bytes_out);
        m_pending = {};
    }
    if (!m_dirty) return false;
    m_sink.flush();
    m_dirty = false;
    return true;
}

}  // namespace mh::endpoint
