#include "gen/fleet.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace mh::gen {
namespace {

constexpr double k_day_ns = 86'400e9;
constexpr double k_warmest_hour = 15;  // the daily cycle peaks mid-afternoon (UTC)
constexpr double k_phase_jitter_rad = 0.25;

// Default models, per report of one source. Sensors report with a fixed resolution,
// so values are rounded (to 1/scale) the way a device would send them.
constexpr double k_temperature_lo = 18, k_temperature_hi = 26;  // per-source baseline, °C
constexpr double k_temperature_sd = 0.5;                         // measurement noise
constexpr double k_temperature_cycle_lo = 0.5, k_temperature_cycle_hi = 1.5;  // daily amplitude
constexpr double k_temperature_scale = 100;

constexpr double k_humidity_lo = 30, k_humidity_hi = 70;  // per-source baseline, %
constexpr double k_humidity_pull = 0.01;                  // mean reversion per report
constexpr double k_humidity_step_sd = 0.3;
constexpr double k_humidity_cycle = 4;  // relative humidity drops as the day warms
constexpr double k_humidity_sigma = 2;  // about the spread of the wander
constexpr double k_humidity_scale = 10;

constexpr double k_pressure_mean = 1013.25, k_pressure_spread = 6;  // hPa: altitude and site
constexpr double k_pressure_pull = 0.002;
constexpr double k_pressure_step_sd = 0.05;
constexpr double k_pressure_sigma = 1;
constexpr double k_pressure_scale = 100;

constexpr double k_battery_start_lo = 90, k_battery_full = 100, k_battery_swap = 5;  // %
constexpr double k_battery_drain_lo = 0.0002, k_battery_drain_hi = 0.001;          // % per report
constexpr double k_battery_sigma = 1;
constexpr double k_battery_scale = 10;

const double k_sqrt12 = std::sqrt(12.0);

// Round half to even without a libm call: adding 1.5 * 2^52 leaves no fraction bits.
inline double round_whole(double x) {
    constexpr double k_magic = 0x1.8p52;
    return std::fabs(x) < 0x1p51 ? (x + k_magic) - k_magic : x;
}
inline double round_to(double x, double scale) { return round_whole(x * scale) / scale; }

double resolution_scale(Dist dist) {
    switch (dist) {
    case Dist::temperature: return k_temperature_scale;
    case Dist::humidity: return k_humidity_scale;
    case Dist::pressure: return k_pressure_scale;
    case Dist::battery: return k_battery_scale;
    default: return 0;  // not rounded
    }
}

}  // namespace

std::string_view label_text(Label label) {
    switch (label) {
    case Label::none: return "";
    case Label::spike: return "spike";
    case Label::stuck: return "stuck";
    case Label::silent_end: return "silent-end";
    }
    return "";
}

Fleet::Fleet(const FleetConfig& config)
    : m_config(config),
      m_rng(config.seed),
      m_field_count(config.fields.size()),
      m_round_time_ns(config.start_ns),
      m_offset_ns(config.sources),
      m_sources(config.sources),
      m_state(static_cast<size_t>(config.sources) * config.fields.size()),
      m_last(static_cast<size_t>(config.sources) * config.fields.size()),
      m_current(config.fields.size()) {
    const double step_rad = 2 * std::numbers::pi * static_cast<double>(config.interval_ns) / k_day_ns;
    m_cycle_step_cos = std::cos(step_rad);
    m_cycle_step_sin = std::sin(step_rad);

    // Per-source parameters come from a stream of their own, so that they do not shift
    // when options that only change the message stream (anomalies) change.
    Rng setup(SplitMix64(config.seed ^ 0x5eed'5eed'12ce'5eedULL).next());
    for (uint32_t s = 0; s < config.sources; ++s) {
        m_offset_ns[s] = static_cast<int64_t>(static_cast<__int128>(config.interval_ns) * s / config.sources);
        const double first_report_ns = static_cast<double>(config.start_ns + m_offset_ns[s]);
        const double time_of_day_ns = std::fmod(std::fmod(first_report_ns, k_day_ns) + k_day_ns, k_day_ns);
        // One step back: compute() rotates before it reads, so the first report gets `phase`.
        const double phase = 2 * std::numbers::pi * (time_of_day_ns / k_day_ns - k_warmest_hour / 24) +
                             setup.uniform(-k_phase_jitter_rad, k_phase_jitter_rad) - step_rad;
        m_sources[s].cycle_cos = std::cos(phase);
        m_sources[s].cycle_sin = std::sin(phase);

        for (size_t f = 0; f < m_field_count; ++f) {
            const FieldSpec& spec = config.fields[f];
            FieldState& state = m_state[s * m_field_count + f];
            switch (spec.dist) {
            case Dist::temperature:
                state.base = setup.uniform(k_temperature_lo, k_temperature_hi);
                state.param = setup.uniform(k_temperature_cycle_lo, k_temperature_cycle_hi);
                break;
            case Dist::humidity:
                state.base = setup.uniform(k_humidity_lo, k_humidity_hi);
                state.level = state.base + k_humidity_sigma * setup.normal();
                break;
            case Dist::pressure:
                state.base = k_pressure_mean + setup.uniform(-k_pressure_spread, k_pressure_spread);
                state.level = state.base + k_pressure_sigma * setup.normal();
                break;
            case Dist::battery:
                state.level = setup.uniform(k_battery_start_lo, k_battery_full);
                state.param = setup.uniform(k_battery_drain_lo, k_battery_drain_hi);
                break;
            case Dist::walk:
                state.level = spec.a;
                break;
            default:
                break;
            }
        }
    }
}

void Fleet::compute(uint32_t source, double* out) {
    SourceState& src = m_sources[source];
    // The daily cycle moves on by one interval: a rotation, cheaper than sin/cos. It is
    // done first so that the state always holds the phase of the latest report.
    const double c = src.cycle_cos, s = src.cycle_sin;
    src.cycle_cos = c * m_cycle_step_cos - s * m_cycle_step_sin;
    src.cycle_sin = s * m_cycle_step_cos + c * m_cycle_step_sin;
    const double cycle = src.cycle_cos;
    FieldState* state = &m_state[static_cast<size_t>(source) * m_field_count];
    for (size_t f = 0; f < m_field_count; ++f, ++state) {
        const FieldSpec& spec = m_config.fields[f];
        double value;
        switch (spec.dist) {
        case Dist::temperature:
            value = round_to(state->base + state->param * cycle + k_temperature_sd * m_rng.normal(),
                             k_temperature_scale);
            break;
        case Dist::humidity:
            state->level += k_humidity_pull * (state->base - state->level) + k_humidity_step_sd * m_rng.normal();
            value = round_to(std::clamp(state->level - k_humidity_cycle * cycle, 0.0, 100.0), k_humidity_scale);
            break;
        case Dist::pressure:
            state->level += k_pressure_pull * (state->base - state->level) + k_pressure_step_sd * m_rng.normal();
            value = round_to(state->level, k_pressure_scale);
            break;
        case Dist::battery:
            state->level -= state->param;
            if (state->level < k_battery_swap) state->level = k_battery_full;
            value = round_to(state->level, k_battery_scale);
            break;
        case Dist::normal:
            value = spec.a + spec.b * m_rng.normal();
            break;
        case Dist::uniform:
            value = spec.a + (spec.b - spec.a) * m_rng.uniform();
            break;
        case Dist::walk:
            state->level += spec.b * m_rng.normal();
            value = state->level;
            break;
        case Dist::constant:
            value = spec.a;
            break;
        case Dist::integer:
            value = spec.a + static_cast<double>(m_rng.below(static_cast<uint64_t>(spec.b - spec.a) + 1));
            break;
        default:
            value = 0;
            break;
        }
        out[f] = value;
    }
}

double Fleet::spike_center(uint32_t source, size_t f) const {
    const FieldSpec& spec = m_config.fields[f];
    const FieldState& state = m_state[static_cast<size_t>(source) * m_field_count + f];
    const SourceState& src = m_sources[source];
    switch (spec.dist) {
    case Dist::temperature: return state.base + state.param * src.cycle_cos;
    case Dist::humidity: return state.level - k_humidity_cycle * src.cycle_cos;
    case Dist::pressure:
    case Dist::battery:
    case Dist::walk: return state.level;
    case Dist::normal:
    case Dist::constant: return spec.a;
    case Dist::uniform:
    case Dist::integer: return (spec.a + spec.b) / 2;
    }
    return 0;
}

double Fleet::spike_sigma(size_t f) const {
    const FieldSpec& spec = m_config.fields[f];
    double sigma = 1;
    switch (spec.dist) {
    case Dist::temperature: sigma = k_temperature_sd; break;
    case Dist::humidity: sigma = k_humidity_sigma; break;
    case Dist::pressure: sigma = k_pressure_sigma; break;
    case Dist::battery: sigma = k_battery_sigma; break;
    case Dist::normal:
    case Dist::walk: sigma = spec.b; break;
    case Dist::uniform:
    case Dist::integer: sigma = (spec.b - spec.a) / k_sqrt12; break;
    case Dist::constant: sigma = std::max(std::fabs(spec.a) / 100, 1.0); break;
    }
    // A field with no spread still needs a unit to depart in.
    return sigma > 0 ? std::max(sigma, spec.is_int() ? 1.0 : 0.0) : 1.0;
}

double Fleet::spike_value(uint32_t source, size_t f) {
    // Called after compute(): the centre is where this report's value was drawn around.
    const double sigmas = m_rng.uniform(k_spike_min_sigmas, k_spike_max_sigmas);
    const double sign = (m_rng.next() >> 63) ? 1.0 : -1.0;
    double value = spike_center(source, f) + sign * sigmas * spike_sigma(f);
    const Dist dist = m_config.fields[f].dist;
    if (dist == Dist::integer) return round_whole(value);
    if (double scale = resolution_scale(dist); scale > 0) return round_to(value, scale);
    return value;
}

bool Fleet::step(Reading& reading) {
    const uint32_t source = m_next_source;
    reading.slot = m_slot++;
    reading.source = source;
    reading.time_ns = m_round_time_ns + m_offset_ns[source];
    reading.label = Label::none;
    if (++m_next_source == m_config.sources) {
        m_next_source = 0;
        m_round_time_ns += m_config.interval_ns;
    }

    // The world goes on whatever the sensor does: the model advances every slot.
    double* current = m_current.data();
    compute(source, current);
    double* last = &m_last[static_cast<size_t>(source) * m_field_count];
    SourceState& src = m_sources[source];
    reading.values = std::span<const double>(current, m_field_count);

    if (src.episode_left > 0) {
        --src.episode_left;
        if (src.episode == AnomalyKind::silent) {
            src.silence_ended = src.episode_left == 0;
            return false;
        }
        reading.label = Label::stuck;
        reading.values = std::span<const double>(last, m_field_count);
        return true;
    }
    if (src.silence_ended) {
        src.silence_ended = false;
        reading.label = Label::silent_end;
    } else if (m_config.anomaly_rate > 0 && src.reported && m_rng.uniform() < m_config.anomaly_rate) {
        const auto& kinds = m_config.anomaly_kinds;
        const AnomalyKind kind = kinds.size() == 1 ? kinds[0] : kinds[m_rng.below(kinds.size())];
        switch (kind) {
        case AnomalyKind::spike:
            current[0] = spike_value(source, 0);
            reading.label = Label::spike;
            break;
        case AnomalyKind::stuck:
            src.episode = kind;
            src.episode_left = m_config.episode_reports - 1;
            reading.label = Label::stuck;
            reading.values = std::span<const double>(last, m_field_count);
            return true;
        case AnomalyKind::silent:
            src.episode = kind;
            src.episode_left = m_config.episode_reports - 1;
            src.silence_ended = src.episode_left == 0;
            return false;
        }
    }
    std::copy(current, current + m_field_count, last);
    src.reported = true;
    return true;
}

}  // namespace mh::gen
