// The simulated fleet: sources reporting round-robin at a fixed event-time interval,
// each with its own baselines and drift, and anomaly episodes injected at a rate.
// It decides what each message says; GenSource turns that into frames and paces them.
#pragma once

#include "gen/field_spec.h"
#include "gen/random.h"

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace mh::gen {

enum class AnomalyKind : uint8_t { spike, stuck, silent };

// The `anomaly` text field of a labelled message; none means the field is absent.
enum class Label : uint8_t { none, spike, stuck, silent_end };
constexpr size_t k_label_count = 4;
std::string_view label_text(Label label);  // "", "spike", "stuck", "silent-end"

constexpr double k_spike_min_sigmas = 8;
constexpr double k_spike_max_sigmas = 15;

struct FleetConfig {
    uint32_t sources = 10;
    uint64_t seed = 0;
    int64_t start_ns = 0;
    int64_t interval_ns = 1'000'000'000;  // between two reports of one source
    std::vector<FieldSpec> fields = default_fields();
    double anomaly_rate = 0;  // probability per message that an episode starts
    std::vector<AnomalyKind> anomaly_kinds = {AnomalyKind::spike, AnomalyKind::stuck, AnomalyKind::silent};
    uint32_t episode_reports = 30;  // length of stuck and silent episodes
};

// One message's content. `values` has one entry per field (ints as whole doubles) and
// stays valid until the next step().
struct Reading {
    uint64_t slot = 0;    // position in the round-robin schedule, silent slots included
    uint32_t source = 0;  // 0-based; its name is sensor-(source+1)
    int64_t time_ns = 0;
    Label label = Label::none;
    std::span<const double> values;
};

class Fleet {
public:
    explicit Fleet(const FleetConfig& config);

    // Advances one slot. Returns false when the slot's source is silent (no message).
    bool step(Reading& reading);

    const FleetConfig& config() const { return m_config; }
    uint64_t slot() const { return m_slot; }  // slots done so far
    // The value a spike on field `f` of `source` departs from, and the unit it departs in.
    double spike_center(uint32_t source, size_t f) const;
    double spike_sigma(size_t f) const;

private:
    struct SourceState {
        double cycle_cos = 1, cycle_sin = 0;  // phase of the daily cycle, rotated each report
        uint32_t episode_left = 0;            // reports left in a stuck or silent episode
        AnomalyKind episode = AnomalyKind::spike;
        bool reported = false;        // has sent at least once: episodes need a "last value"
        bool silence_ended = false;   // the next message is the first after a silence
    };
    // Per source and field: the model's state (walk level, wander level, battery level)
    // and the per-source parameters it was given.
    struct FieldState {
        double level = 0;
        double base = 0;
        double param = 0;
    };

    void compute(uint32_t source, double* out);
    double spike_value(uint32_t source, size_t f);

    FleetConfig m_config;
    Rng m_rng;
    size_t m_field_count;
    uint64_t m_slot = 0;
    uint32_t m_next_source = 0;
    int64_t m_round_time_ns;              // event time of source 0 in the current round
    std::vector<int64_t> m_offset_ns;     // source s reports s * interval / sources after source 0
    double m_cycle_step_cos, m_cycle_step_sin;
    std::vector<SourceState> m_sources;
    std::vector<FieldState> m_state;      // [source * fields + f]
    std::vector<double> m_last;           // [source * fields + f]: last values sent
    std::vector<double> m_current;        // the reading being built
    uint64_t m_anomaly_threshold;         // anomaly_rate scaled to 2^64, compared with raw bits
};

}  // namespace mh::gen
