// The one path every accepted message takes, whatever protocol brought it: the source
// must be one the gateway may publish for, the quota must allow it, and it leaves with
// a fresh id, `ingested` = now and `gateway` = the authenticated gateway (whatever the
// client put there is overwritten). Then it goes to the output.
#pragma once

#include "endpoint/gatekeeper.h"
#include "endpoint/limits.h"
#include "message/id.h"
#include "message/scratch_builder.h"
#include "json/json_codec.h"
#include "wire/message_view.h"
#include "wire/stream.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mh::mqtt {
class SessionState;
}

namespace mh::endpoint {

class MqttGatewaySession;

// What a gateway's MQTT clients keep across connections (clean session 0).
struct MqttSlot {
    std::shared_ptr<mqtt::SessionState> state;
    MqttGatewaySession* owner = nullptr;  // the connection using it now
};

constexpr size_t k_source_cache_entries = 4096;  // per gateway: answers of may_publish kept

// Lets the source cache be searched with a string_view, without building a string per message.
struct TextHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};

// The registry's answers to "may this gateway publish for this source?", kept per gateway.
// A gateway's messages mostly come for one source after another (an MQTT topic, a sensor's
// burst): the last answer is compared first, before the hash of the source is computed.
class SourceAnswers {
public:
    const bool* find(std::string_view source) {
        if (m_last && m_last->first == source) return &m_last->second;
        auto it = m_answers.find(source);
        if (it == m_answers.end()) return nullptr;
        m_last = &*it;
        return &it->second;
    }
    void remember(std::string_view source, bool answer) {
        if (m_answers.size() >= k_source_cache_entries) clear();
        m_last = &*m_answers.emplace(std::string(source), answer).first;
    }
    void clear() {  // on reload; node addresses (m_last) end with their nodes
        m_last = nullptr;
        m_answers.clear();
    }

private:
    std::unordered_map<std::string, bool, TextHash, std::equal_to<>> m_answers;
    const std::pair<const std::string, bool>* m_last = nullptr;
};

// A command waiting in memory for its gateway (without --command-queue).
struct QueuedCommand {
    int64_t expires_ns;
    std::vector<std::byte> frame;
};

// One gateway's state shared by all its connections: quota buckets, connection count,
// commands waiting for it.
struct GatewayState {
    std::string id;
    TokenBucket messages;
    TokenBucket bytes;
    uint32_t connections = 0;
    SourceAnswers may_publish;                         // cleared on reload
    std::deque<QueuedCommand> commands;                // waiting for delivery
    std::map<std::string, MqttSlot> mqtt_sessions;     // persistent MQTT sessions by client id
};

enum class Verdict { accepted, malformed, source, quota, oversized };
std::string_view verdict_reason(Verdict verdict);

// What a protocol knows better than the message (an MQTT topic names the source).
struct Overrides {
    std::string_view source;  // empty: the message's own
    std::string_view kind;    // empty: the message's own
};

struct IngestCounters {
    explicit IngestCounters(metrics::Registry& registry);
    metrics::Counter& messages_in;
    metrics::Counter& bytes_in;
    metrics::Counter& messages_out;
    metrics::Counter& bytes_out;
};

class Ingest {
public:
    Ingest(wire::FrameSink& sink, const Gatekeeper& gatekeeper, wire::FrameLimits limits,
           metrics::Registry& registry, uint64_t seed);

    // `frame` must be word aligned. `now_ns` is wall-clock time. Frames from outside are
    // checked pointer by pointer first; `checked` says this one was made here (from JSON).
    Verdict frame(GatewayState& gateway, const wire::Frame& frame, int64_t now_ns, Overrides overrides = {},
                  bool checked = false);
    // One JSON object (lib/json's mapping).
    Verdict json(GatewayState& gateway, std::string_view text, int64_t now_ns, Overrides overrides = {},
                 std::string* error = nullptr);

    // Hands everything written so far to the output for real, and publishes the counts;
    // true if there was anything written.
    bool flush();
    void set_gatekeeper(const Gatekeeper& gatekeeper) { m_gatekeeper = &gatekeeper; }
    // Messages of kind `kind` (their own: no override) are not ingested but handed to
    // `divert`, after the frame check (the endpoint's command replies, lib/command).
    using Divert = std::function<Verdict(GatewayState&, const wire::Frame&)>;
    void divert(std::string kind, Divert divert) {
        m_divert_kind = std::move(kind);
        m_divert = std::move(divert);
    }
    size_t max_message_bytes() const { return m_limits.max_frame_bytes; }

private:
    bool allowed(GatewayState& gateway, std::string_view source);
    // Judges and stamps the message in m_view (read from `original`, or from JSON when null;
    // a frame of `frame_bytes`), then writes it.
    Verdict stamp(GatewayState& gateway, const wire::Frame* original, size_t frame_bytes, int64_t now_ns,
                  Overrides overrides);
    Verdict write(const std::vector<std::byte>& stamped);
    Verdict accepted(size_t frame_bytes);  // counts a frame written

    wire::FrameSink& m_sink;
    const Gatekeeper* m_gatekeeper;  // swapped by a reload
    wire::FrameLimits m_limits;
    IngestCounters m_counters;
    IdGenerator m_ids;
    ScratchBuilder m_builder;     // for frames not in mh's layout
    wire::MessageView m_view;     // the one in hand, read in place
    MessageId m_id{};
    std::vector<std::byte> m_diverted;  // a JSON message's frame, for the divert
    JsonDecoder m_decoder;
    std::vector<std::byte> m_out;
    // Counted here and added to the shared counters at flush(): an atomic add per message
    // and counter cost more than the counting.
    struct Counts {
        uint64_t messages_in = 0, bytes_in = 0, messages_out = 0, bytes_out = 0;
    } m_pending;
    bool m_dirty = false;
    std::string m_divert_kind;
    Divert m_divert;
};

}  // namespace mh::endpoint
