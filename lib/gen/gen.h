// mh-gen: simulates a fleet of origins (sensors behind field gateways) and writes their
// telemetry as frames, as fast as possible or paced to a rate, with anomalies injected
// and optionally labelled so that detectors can be checked against ground truth.
#pragma once

#include "cli/tool.h"
#include "gen/fleet.h"
#include "gen/message_template.h"
#include "message/id.h"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mh::gen {

constexpr uint64_t k_max_sources = 1'000'000;
constexpr double k_max_rate = 1e9;                                    // messages/s
constexpr int64_t k_seeded_start_ns = int64_t{1'767'225'600} * 1'000'000'000;  // 2026-01-01T00:00:00Z
constexpr std::string_view k_kind = "telemetry";

// The command line as given; resolve() checks it and fills in the defaults.
struct GenOptions {
    cli::CommonOptions common;
    uint64_t sources = 10;
    uint64_t gateways = 1;
    double rate = 0;                  // messages/s of wall clock, 0 = as fast as possible
    uint64_t count = 0;               // 0 = unbounded
    std::string duration;             // wall clock, e.g. "30s"; empty = unbounded
    std::optional<uint64_t> seed;     // absent: from the clock and /dev/urandom
    std::string start;                // empty: now, or k_seeded_start_ns with a seed
    std::string interval;             // empty: sources/rate s with a rate, else 1 s
    std::vector<std::string> field_specs;  // --field NAME=DIST, repeatable
    std::vector<std::string> fields;       // --fields: a subset of the default fields
    double anomalies = 0;                  // probability per message that an episode starts
    std::vector<std::string> anomaly_kinds = {"spike", "stuck", "silent"};
    uint64_t episode = 30;  // reports per stuck or silent episode
    bool label_anomalies = false;
    // Acting as the gateways against an mh-endpoint (native protocol):
    std::string connect;              // tls://HOST:PORT or tcp://HOST:PORT; empty = no
    bool answer_commands = false;     // with connect: log commands and reply to them
    std::vector<std::string> tokens;  // GATEWAY=TOKEN, repeatable
    std::string tokens_file;          // "GATEWAY TOKEN" lines
    std::string ca_file, cert_file, key_file;
};

// A checked run plan, every default resolved.
struct GenConfig {
    FleetConfig fleet;
    uint32_t gateways = 1;
    double rate = 0;
    uint64_t count = 0;
    int64_t duration_ns = 0;  // 0 = unbounded
    bool label_anomalies = false;
};

// Throws Error(usage) with a message naming the option for anything out of range.
GenConfig resolve(const GenOptions& options);

// "sensor-000001" for source 0; the number is zero-padded to 6 digits or to the
// width of the largest source number, so all names of a run have one width.
std::string source_name(uint32_t source, uint32_t sources);
// "gw-01" for gateway 0, padded to 2 digits or the width of the largest.
std::string gateway_name(uint32_t gateway, uint32_t gateways);
// Sources are spread evenly, in contiguous blocks: gateway of source s is s * G / N.
uint32_t gateway_of(uint32_t source, uint32_t sources, uint32_t gateways);

// The simulator as a frame source. next(Wait::no) returns frames as fast as the pace
// allows and Next::idle when the next one is not due yet (so the pump flushes);
// next(Wait::yes) sleeps until it is. Next::end after --count messages, after
// --duration of wall clock, or once `stop` is set. A frame is valid until the next call.
class GenSource final : public wire::FrameSource {
public:
    explicit GenSource(const GenConfig& config, const StopFlag* stop = nullptr);
    wire::Next next(wire::Wait wait, wire::Frame& frame) override;

    uint64_t messages() const { return m_messages; }  // frames handed out so far
    const Fleet& fleet() const { return m_fleet; }
    size_t frame_bytes() const { return m_templates[0]->frame_bytes(); }  // of an unlabelled frame

private:
    enum class Refill { ready, idle, end };
    Refill refill(wire::Wait wait);
    int64_t due_ns(uint64_t slot) const;  // monotonic time at which `slot` may be sent

    GenConfig m_config;
    const StopFlag* m_stop;
    Fleet m_fleet;
    IdGenerator m_ids;
    std::array<std::unique_ptr<MessageTemplate>, k_label_count> m_templates;
    size_t m_source_chars, m_gateway_chars;
    std::string m_source_names;               // fixed width, back to back
    std::string m_gateway_names;              // fixed width, back to back
    std::vector<uint32_t> m_gateway_of;       // per source
    uint64_t m_messages = 0;
    uint64_t m_allowed_slots = 0;  // slots that may be generated before looking at the clock again
    uint64_t m_slot_limit;         // slots due before the --duration deadline (paced runs)
    uint64_t m_min_batch;          // slots to wait for when idle: bounds wake-ups per second
    bool m_started = false;
    int64_t m_t0_ns = 0;  // monotonic time of the first next()
};

// mh-gen's main: frames to every --out (default stdout) through relay::pump.
int run(const GenOptions& options, cli::ToolContext& context);

}  // namespace mh::gen
