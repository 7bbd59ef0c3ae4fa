#include "aggregate/aggregator.h"

#include "core/error.h"
#include "expr/field_builder.h"
#include "message/id.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace mh::aggregate {
namespace {
using expr::copy_text;
using expr::set_name;
using expr::set_value;

constexpr std::string_view k_aggregate_kind = "aggregate";
constexpr std::string_view k_alert_kind = "alert";
// Event times beyond this (year 2116) are refused as late, durations beyond k_max_duration_ns
// (36 years) as options, so that window arithmetic cannot overflow; a snapshot's times
// must lie within k_max_abs_state_ns.
constexpr int64_t k_max_abs_time_ns = int64_t{1} << 62;
constexpr int64_t k_max_duration_ns = int64_t{1} << 60;
constexpr int64_t k_max_abs_state_ns = k_max_abs_time_ns + 2 * k_max_duration_ns;

// a - b, saturated: for differences of times restored from a snapshot.
int64_t minus(int64_t a, int64_t b) {
    int64_t d;
    if (__builtin_sub_overflow(a, b, &d)) return a > b ? INT64_MAX : INT64_MIN;
    return d;
}
double seconds_between(int64_t from, int64_t to) {
    return (static_cast<double>(to) - static_cast<double>(from)) / 1e9;
}
// Silence is checked whenever the watermark has moved this share of the shortest duration.
constexpr int64_t k_silence_checks_per_duration = 10;
// Two equal readings far apart (around a silence) are a coincidence, not a stuck sensor.
constexpr uint64_t k_stuck_min_reports = 3;

// Key bytes: a type tag per --by key, then the value.
enum KeyTag : uint8_t { tag_missing = 0, tag_text = 1, tag_int = 2, tag_float = 3, tag_bool = 4 };

constexpr uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

std::string_view view(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

expr::Value value_of(schema::Field::Value::Reader value) {
    switch (value.which()) {
        case schema::Field::Value::FLOAT:
            return expr::Value::of_float(value.getFloat());
        case schema::Field::Value::INT:
            return expr::Value::of_int(value.getInt());
        case schema::Field::Value::TEXT:
            return expr::Value::of_text(view(value.getText()));
        case schema::Field::Value::BOOL:
            return expr::Value::of_bool(value.getBool());
        case schema::Field::Value::JSON:
            return expr::Value::of_text(view(value.getJson()));
    }
    return expr::Value::missing();
}

bool numeric(const expr::Value& v) {
    return v.type == expr::Type::integer || v.type == expr::Type::floating;
}
double as_double(const expr::Value& v) {
    return v.type == expr::Type::integer ? static_cast<double>(v.integer) : v.floating;
}


// A value kept across messages (first, last, stuck): text is copied, reusing capacity.
struct Held {
    expr::Type type = expr::Type::missing;
    bool boolean = false;
    int64_t integer = 0;
    double floating = 0;
    std::string text;
    void set(const expr::Value& v) {
        type = v.type;
        boolean = v.boolean;
        integer = v.integer;
        floating = v.floating;
        if (v.type == expr::Type::text) text.assign(v.text);
    }
    expr::Value get() const {
        expr::Value v;
        v.type = type;
        v.boolean = boolean;
        v.integer = integer;
        v.floating = floating;
        if (type == expr::Type::text) v.text = text;
        return v;
    }
    bool equals(const expr::Value& v) const {
        if (v.type != type) return false;
        switch (type) {
            case expr::Type::boolean: return v.boolean == boolean;
            case expr::Type::integer: return v.integer == integer;
            case expr::Type::floating: return v.floating == floating;
            case expr::Type::text: return v.text == text;
            case expr::Type::missing: return true;
        }
        return false;
    }
};

uint64_t hash_value(const expr::Value& v) {
    std::byte bytes[9];
    bytes[0] = static_cast<std::byte>(v.type);
    switch (v.type) {
        case expr::Type::text: {
            uint64_t h = hash_bytes(std::as_bytes(std::span(v.text.data(), v.text.size())));
            return mix64(h ^ 0x7478u);
        }
        case expr::Type::integer:
            std::memcpy(bytes + 1, &v.integer, 8);
            break;
        case expr::Type::floating: {
            double f = v.floating == 0 ? 0.0 : v.floating;  // -0 and 0 are one value
            std::memcpy(bytes + 1, &f, 8);
            break;
        }
        case expr::Type::boolean:
            std::memset(bytes + 1, v.boolean ? 1 : 0, 8);
            break;
        case expr::Type::missing:
            std::memset(bytes + 1, 0, 8);
            break;
    }
    return hash_bytes(bytes);
}

}  // namespace

// ---- state of one aggregate in one window ----

struct Aggregator::Acc {
    uint64_t n = 0;
    double sum = 0;
    int64_t int_sum = 0;
    bool all_int = true;
    double mean = 0, m2 = 0;  // Welford
    expr::Value min, max;     // numeric only
    Held first, last;
    int64_t first_time = 0, last_time = 0;
    // Inline, not behind a pointer: one cache miss fewer per message.
    std::optional<DDSketch> sketch;
    std::optional<HyperLogLog> distinct;

    void reset() {
        n = 0;
        sum = 0;
        int_sum = 0;
        all_int = true;
        mean = m2 = 0;
        min = max = expr::Value::missing();
        first.type = last.type = expr::Type::missing;
        first_time = last_time = 0;
        if (sketch) sketch->reset();
        if (distinct) distinct->reset();
    }

    void add_number(const expr::Value& v, double x) {
        ++n;
        sum += x;
        if (all_int && (v.type != expr::Type::integer ||
                        __builtin_add_overflow(int_sum, v.integer, &int_sum)))
            all_int = false;
        double delta = x - mean;
        mean += delta / static_cast<double>(n);
        m2 += delta * (x - mean);
    }

    void add_first_last(const expr::Value& v, int64_t time) {
        if (first.type == expr::Type::missing || time < first_time) {
            first.set(v);
            first_time = time;
        }
        if (last.type == expr::Type::missing || time >= last_time) {
            last.set(v);
            last_time = time;
        }
    }

    static bool less(const expr::Value& a, const expr::Value& b) {
        if (a.type == expr::Type::integer && b.type == expr::Type::integer) return a.integer < b.integer;
        return as_double(a) < as_double(b);
    }

    void add_min_max(const expr::Value& v) {
        ++n;
        if (min.type == expr::Type::missing || less(v, min)) min = v;
        if (max.type == expr::Type::missing || less(max, v)) max = v;
    }
};

struct Aggregator::Pane {
    int64_t start = 0, end = 0;
    bool open = false;
    uint32_t generation = 0;
    uint64_t seq = 0;    // creation order: ties between equal windows go in this order
    uint64_t count = 0;  // messages
    std::vector<Acc> accs;
};

struct Aggregator::Detector {
    // zscore: values seen; stuck: reports of the current value
    uint64_t n = 0;
    double mean = 0, variance = 0, m2 = 0;
    // stuck
    Held value;
    int64_t since = 0;
    // stuck, silence: raised once until the condition ends
    bool alerted = false;
};

struct Aggregator::Group {
    static constexpr size_t k_inline_key_bytes = 48;
    uint64_t hash = 0;
    uint64_t last_seen = 0;  // stamp of its last message: the least recent is evicted first
    uint32_t generation = 0;
    uint32_t key_size = 0;
    bool in_use = false;
    int64_t last_time = INT64_MIN;  // the largest event time seen
    // Keys up to 48 bytes live in the group itself, so a lookup reads no other memory.
    char key_inline[k_inline_key_bytes];
    std::string key_long;
    std::vector<Pane> panes;
    std::vector<Detector> detectors;

    std::string_view key() const {
        return key_size <= k_inline_key_bytes ? std::string_view(key_inline, key_size) : std::string_view(key_long);
    }
    void set_key(std::string_view key) {
        key_size = static_cast<uint32_t>(key.size());
        if (key.size() <= k_inline_key_bytes)
            std::memcpy(key_inline, key.data(), key.size());
        else
            key_long.assign(key);
    }
};

namespace {
uint64_t hash_key(std::string_view key) { return hash_bytes(std::as_bytes(std::span(key.data(), key.size()))); }
constexpr size_t k_initial_slots = 64;
}  // namespace

uint32_t Aggregator::index_find(uint64_t hash, std::string_view key) const {
    if (m_slots.empty()) return UINT32_MAX;
    const size_t mask = m_slots.size() - 1;
    const auto tag = static_cast<uint32_t>(hash >> 32);
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const Slot& slot = m_slots[i];
        if (slot.group == UINT32_MAX) return UINT32_MAX;
        if (slot.tag == tag && m_groups[slot.group].key() == key) return slot.group;
    }
}

void Aggregator::index_insert(uint64_t hash, uint32_t group) {
    if (2 * (m_slots_used + 1) > m_slots.size()) {
        std::vector<Slot> old = std::move(m_slots);
        m_slots.assign(std::max(k_initial_slots, 2 * old.size()), Slot{});
        m_slots_used = 0;
        for (const Slot& slot : old)
            if (slot.group != UINT32_MAX) index_insert(m_groups[slot.group].hash, slot.group);
    }
    const size_t mask = m_slots.size() - 1;
    size_t i = hash & mask;
    while (m_slots[i].group != UINT32_MAX) i = (i + 1) & mask;
    m_slots[i] = {static_cast<uint32_t>(hash >> 32), group};
    ++m_slots_used;
}

void Aggregator::index_erase(uint64_t hash, uint32_t group) {
    const size_t mask = m_slots.size() - 1;
    size_t i = hash & mask;
    while (m_slots[i].group != group) i = (i + 1) & mask;
    // Backward-shift deletion: later entries of the probe run move up, so no tombstones.
    for (size_t j = (i + 1) & mask; m_slots[j].group != UINT32_MAX; j = (j + 1) & mask) {
        size_t home = m_groups[m_slots[j].group].hash & mask;
        // Move j into the hole at i when its home is not in the cyclic range (i, j].
        bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!between) {
            m_slots[i] = m_slots[j];
            i = j;
        }
    }
    m_slots[i] = Slot{};
    --m_slots_used;
}

Aggregator::Aggregator(AggregatorConfig config, const wire::FrameLimits& limits, Log& log)
    : m_config(std::move(config)), m_log(log), m_opener(limits) {
    auto usage = [](std::string text) { return Error(ExitCode::usage, std::move(text)); };
    switch (m_config.window) {
        case WindowKind::tumbling:
            if (m_config.size_ns <= 0) throw usage("--window must be a positive duration");
            m_config.hop_ns = m_config.size_ns;
            break;
        case WindowKind::hopping:
            if (m_config.size_ns <= 0 || m_config.hop_ns <= 0)
                throw usage("--window and --hop must be positive durations");
            if (m_config.hop_ns > m_config.size_ns)
                throw usage("--hop longer than --window would leave gaps no window covers");
            if (static_cast<uint64_t>(m_config.size_ns / m_config.hop_ns) > k_max_hops_per_window)
                throw usage(fmt::format("--window / --hop is over {}: each message would go to that "
                                        "many windows", k_max_hops_per_window));
            break;
        case WindowKind::session:
            if (m_config.gap_ns <= 0) throw usage("--session must be a positive duration");
            break;
    }
    if (m_config.lateness_ns < 0) throw usage("--lateness must not be negative");
    for (int64_t duration : {m_config.size_ns, m_config.hop_ns, m_config.gap_ns, m_config.lateness_ns})
        if (duration > k_max_duration_ns) throw usage("a window, hop, session gap or lateness over 36 years");
    for (const auto& rule : m_config.detects)
        if (rule.duration_ns > k_max_duration_ns) throw usage("a --detect duration over 36 years");
    if (m_config.max_groups == 0) throw usage("--max-groups must be at least 1");

    auto slot_of = [&](const std::string& name) {
        auto it = std::find(m_field_names.begin(), m_field_names.end(), name);
        if (it != m_field_names.end()) return static_cast<int32_t>(it - m_field_names.begin());
        m_field_names.push_back(name);
        m_slot_kind.push_back(name == "source"    ? KeyKind::source
                              : name == "gateway" ? KeyKind::gateway
                              : name == "kind"    ? KeyKind::kind
                                                  : KeyKind::field);
        return static_cast<int32_t>(m_field_names.size() - 1);
    };
    for (const auto& agg : m_config.aggs) m_agg_slot.push_back(agg.field.empty() ? -1 : slot_of(agg.field));
    for (const auto& key : m_config.keys) m_key_slot.push_back(key.kind == KeyKind::field ? slot_of(key.name) : -1);
    for (const auto& rule : m_config.detects) {
        m_detect_slot.push_back(rule.field.empty() ? -1 : slot_of(rule.field));
        if (rule.kind == DetectKind::silence) {
            int64_t step = std::max<int64_t>(1, rule.duration_ns / k_silence_checks_per_duration);
            m_silence_step = m_has_silence ? std::min(m_silence_step, step) : step;
            m_has_silence = true;
        }
    }
    m_values.resize(m_field_names.size());
}

Aggregator::~Aggregator() = default;

size_t Aggregator::groups() const { return m_groups.size() - m_free_groups.size(); }

uint64_t Aggregator::fingerprint() const {
    std::string text = fmt::format("v1 {} {} {} {} {} {}|", static_cast<int>(m_config.window),
                                   m_config.size_ns, m_config.hop_ns, m_config.gap_ns,
                                   m_config.lateness_ns, static_cast<int>(m_config.clock));
    for (const auto& key : m_config.keys) text += fmt::format("k{}:{}|", static_cast<int>(key.kind), key.name);
    for (const auto& agg : m_config.aggs)
        text += fmt::format("a{}:{}:{}:{}|", static_cast<int>(agg.kind), agg.field, agg.quantile, agg.name);
    for (const auto& rule : m_config.detects)
        text += fmt::format("d{}:{}:{}:{}:{}:{}|", static_cast<int>(rule.kind), rule.field,
                            rule.threshold, rule.alpha, rule.duration_ns, rule.name);
    return hash_bytes(std::as_bytes(std::span(text.data(), text.size())));
}

void Aggregator::read_fields(schema::Message::Reader message) {
    if (m_field_names.empty()) return;
    std::fill(m_values.begin(), m_values.end(), expr::Value::missing());
    // source, gateway and kind in an aggregate or detector mean the header (distinct(source)).
    for (size_t slot = 0; slot < m_slot_kind.size(); ++slot) {
        switch (m_slot_kind[slot]) {
            case KeyKind::source:
                if (message.hasSource()) m_values[slot] = expr::Value::of_text(view(message.getSource()));
                break;
            case KeyKind::gateway:
                if (message.hasGateway()) m_values[slot] = expr::Value::of_text(view(message.getGateway()));
                break;
            case KeyKind::kind:
                if (message.hasKind()) m_values[slot] = expr::Value::of_text(view(message.getKind()));
                break;
            case KeyKind::field:
                break;
        }
    }
    for (auto field : message.getFields()) {
        std::string_view name = view(field.getName());
        for (size_t slot = 0; slot < m_field_names.size(); ++slot)
            if (m_values[slot].type == expr::Type::missing && name == m_field_names[slot])
                m_values[slot] = value_of(field.getValue());
    }
}

void Aggregator::encode_key(schema::Message::Reader message) {
    m_key.clear();
    auto put_text = [&](std::string_view text, bool present) {
        if (!present) {
            m_key.push_back(static_cast<char>(tag_missing));
            return;
        }
        m_key.push_back(static_cast<char>(tag_text));
        auto size = static_cast<uint32_t>(text.size());
        m_key.append(reinterpret_cast<const char*>(&size), 4);
        m_key.append(text);
    };
    for (size_t k = 0; k < m_config.keys.size(); ++k) {
        switch (m_config.keys[k].kind) {
            case KeyKind::source:
                put_text(view(message.getSource()), message.hasSource());
                break;
            case KeyKind::gateway:
                put_text(view(message.getGateway()), message.hasGateway());
                break;
            case KeyKind::kind:
                put_text(view(message.getKind()), message.hasKind());
                break;
            case KeyKind::field: {
                const expr::Value& v = m_values[static_cast<size_t>(m_key_slot[k])];
                switch (v.type) {
                    case expr::Type::missing:
                        m_key.push_back(static_cast<char>(tag_missing));
                        break;
                    case expr::Type::text:
                        put_text(v.text, true);
                        break;
                    case expr::Type::integer:
                        m_key.push_back(static_cast<char>(tag_int));
                        m_key.append(reinterpret_cast<const char*>(&v.integer), 8);
                        break;
                    case expr::Type::floating: {
                        m_key.push_back(static_cast<char>(tag_float));
                        double f = v.floating == 0 ? 0.0 : v.floating;
                        m_key.append(reinterpret_cast<const char*>(&f), 8);
                        break;
                    }
                    case expr::Type::boolean:
                        m_key.push_back(static_cast<char>(tag_bool));
                        m_key.push_back(v.boolean ? 1 : 0);
                        break;
                }
                break;
            }
        }
    }
}

void Aggregator::touch(uint32_t g) { m_groups[g].last_seen = ++m_stamp; }

// The least recently seen group: exact among few groups; among many, the oldest of a
// sample (as Redis does), so that finding it costs the same whatever the cap.
uint32_t Aggregator::eviction_victim() {
    uint32_t victim = UINT32_MAX;
    auto consider = [&](uint32_t g) {
        if (m_groups[g].in_use && (victim == UINT32_MAX || m_groups[g].last_seen < m_groups[victim].last_seen))
            victim = g;
    };
    const auto count = static_cast<uint32_t>(m_groups.size());
    if (count <= k_exact_lru_groups) {
        for (uint32_t g = 0; g < count; ++g) consider(g);
        return victim;
    }
    for (size_t i = 0; i < k_lru_samples || victim == UINT32_MAX; ++i) {
        m_sample_state = m_sample_state * 6364136223846793005ULL + 1442695040888963407ULL;
        consider(static_cast<uint32_t>((m_sample_state >> 33) % count));
    }
    return victim;
}

void Aggregator::evict(uint32_t g, int64_t now_ns) {
    Group& group = m_groups[g];
    // Emitted early, in window order, so nothing counted is lost.
    std::vector<uint32_t> open;
    for (uint32_t p = 0; p < group.panes.size(); ++p)
        if (group.panes[p].open) open.push_back(p);
    std::sort(open.begin(), open.end(), [&](uint32_t a, uint32_t b) {
        return std::tie(group.panes[a].end, group.panes[a].start) <
               std::tie(group.panes[b].end, group.panes[b].start);
    });
    for (uint32_t p : open) {
        emit(g, p, now_ns, true);
        close_pane(g, p);
        ++m_stats.evicted_windows;
    }
    ++m_stats.evicted;
    if (!m_warned_eviction) {
        m_warned_eviction = true;
        m_log.warn(
            "--max-groups {} reached: the least recently seen groups are evicted, their open "
            "windows emitted early with evicted=true and their detectors reset (counted in "
            "mh_aggregate_evicted_total); raise --max-groups or use fewer --by keys",
            m_config.max_groups);
    }
    index_erase(group.hash, g);
    group.in_use = false;
    ++group.generation;
    m_free_groups.push_back(g);
}

uint32_t Aggregator::find_or_add_group(int64_t now_ns) {
    const uint64_t hash = hash_key(m_key);
    if (uint32_t found = index_find(hash, m_key); found != UINT32_MAX) {
        touch(found);
        return found;
    }
    if (groups() >= m_config.max_groups) evict(eviction_victim(), now_ns);
    uint32_t g;
    if (!m_free_groups.empty()) {
        g = m_free_groups.back();
        m_free_groups.pop_back();
    } else {
        g = static_cast<uint32_t>(m_groups.size());
        m_groups.emplace_back();
    }
    Group& group = m_groups[g];
    group.set_key(m_key);
    group.in_use = true;
    group.last_time = INT64_MIN;
    group.detectors.assign(m_config.detects.size(), Detector{});
    group.hash = hash;
    index_insert(hash, g);
    touch(g);
    return g;
}

uint32_t Aggregator::open_pane(uint32_t g, int64_t start, int64_t end) {
    Group& group = m_groups[g];
    uint32_t p = 0;
    while (p < group.panes.size() && group.panes[p].open) ++p;
    if (p == group.panes.size()) {
        group.panes.emplace_back();
        Pane& pane = group.panes.back();
        pane.accs.resize(m_config.aggs.size());
        for (size_t a = 0; a < m_config.aggs.size(); ++a) {
            if (m_config.aggs[a].kind == AggKind::quantile) pane.accs[a].sketch.emplace();
            if (m_config.aggs[a].kind == AggKind::distinct) pane.accs[a].distinct.emplace();
        }
    }
    Pane& pane = group.panes[p];
    for (auto& acc : pane.accs) acc.reset();
    pane.start = start;
    pane.end = end;
    pane.open = true;
    pane.count = 0;
    pane.seq = m_seq++;
    ++m_open_panes;
    schedule(g, p);
    return p;
}

void Aggregator::schedule(uint32_t g, uint32_t p) {
    Group& group = m_groups[g];
    Pane& pane = group.panes[p];
    ++pane.generation;
    m_due.push({pane.end, pane.start, pane.seq, g, p, group.generation, pane.generation});
}

void Aggregator::close_pane(uint32_t g, uint32_t p) {
    Pane& pane = m_groups[g].panes[p];
    pane.open = false;
    ++pane.generation;
    --m_open_panes;
}

void Aggregator::update(Pane& pane, int64_t time) {
    ++pane.count;
    for (size_t a = 0; a < pane.accs.size(); ++a) {
        const AggSpec& spec = m_config.aggs[a];
        Acc& acc = pane.accs[a];
        int32_t slot = m_agg_slot[a];
        if (slot < 0) continue;  // count() and rate() read the pane's count
        const expr::Value& v = m_values[static_cast<size_t>(slot)];
        if (v.type == expr::Type::missing) continue;
        switch (spec.kind) {
            case AggKind::count:
                ++acc.n;
                break;
            case AggKind::sum:
            case AggKind::mean:
            case AggKind::stddev:
                if (numeric(v)) acc.add_number(v, as_double(v));
                break;
            case AggKind::min:
            case AggKind::max:
                if (numeric(v)) acc.add_min_max(v);
                break;
            case AggKind::first:
            case AggKind::last:
                ++acc.n;
                acc.add_first_last(v, time);
                break;
            case AggKind::rate:
                if (numeric(v)) {
                    ++acc.n;
                    acc.add_first_last(v, time);
                }
                break;
            case AggKind::quantile:
                if (numeric(v) && std::isfinite(as_double(v))) {
                    ++acc.n;
                    acc.sketch->add(as_double(v));
                }
                break;
            case AggKind::distinct:
                ++acc.n;
                acc.distinct->add_hash(hash_value(v));
                break;
        }
    }
}

// Session panes of one group that now overlap (a message bridged their gap) become one.
void Aggregator::merge_sessions(uint32_t g, uint32_t into) {
    Group& group = m_groups[g];
    bool merged = true;
    while (merged) {
        merged = false;
        for (uint32_t p = 0; p < group.panes.size(); ++p) {
            if (p == into || !group.panes[p].open) continue;
            Pane& a = group.panes[into];
            Pane& b = group.panes[p];
            if (!(b.start < a.end && a.start < b.end)) continue;
            a.start = std::min(a.start, b.start);
            a.end = std::max(a.end, b.end);
            a.count += b.count;
            a.seq = std::min(a.seq, b.seq);
            for (size_t k = 0; k < a.accs.size(); ++k) {
                Acc& x = a.accs[k];
                const Acc& y = b.accs[k];
                if (y.n == 0) continue;
                uint64_t n = x.n + y.n;
                double delta = y.mean - x.mean;
                x.m2 = x.m2 + y.m2 +
                       delta * delta * static_cast<double>(x.n) * static_cast<double>(y.n) / static_cast<double>(n);
                x.mean = x.mean + delta * static_cast<double>(y.n) / static_cast<double>(n);
                x.sum += y.sum;
                if (x.all_int && (!y.all_int || __builtin_add_overflow(x.int_sum, y.int_sum, &x.int_sum)))
                    x.all_int = false;
                if (y.min.type != expr::Type::missing && (x.min.type == expr::Type::missing || Acc::less(y.min, x.min)))
                    x.min = y.min;
                if (y.max.type != expr::Type::missing && (x.max.type == expr::Type::missing || Acc::less(x.max, y.max)))
                    x.max = y.max;
                if (y.first.type != expr::Type::missing &&
                    (x.first.type == expr::Type::missing || y.first_time < x.first_time)) {
                    x.first.set(y.first.get());
                    x.first_time = y.first_time;
                }
                if (y.last.type != expr::Type::missing &&
                    (x.last.type == expr::Type::missing || y.last_time >= x.last_time)) {
                    x.last.set(y.last.get());
                    x.last_time = y.last_time;
                }
                if (x.sketch) x.sketch->merge(*y.sketch);
                if (x.distinct) x.distinct->merge(*y.distinct);
                x.n = n;
            }
            close_pane(g, p);
            merged = true;
        }
    }
}

bool Aggregator::assign(uint32_t g, int64_t time, int64_t watermark_before) {
    Group& group = m_groups[g];
    if (m_config.window == WindowKind::session) {
        const int64_t gap = m_config.gap_ns;
        for (uint32_t p = 0; p < group.panes.size(); ++p) {
            Pane& pane = group.panes[p];
            if (!pane.open || !(pane.start - gap < time && time < pane.end)) continue;
            update(pane, time);
            bool moved = time < pane.start || time + gap > pane.end;
            pane.start = std::min(pane.start, time);
            pane.end = std::max(pane.end, time + gap);
            if (moved) {
                merge_sessions(g, p);
                schedule(g, p);
            }
            return true;
        }
        if (time + gap <= watermark_before) return false;
        uint32_t p = open_pane(g, time, time + gap);
        update(group.panes[p], time);
        return true;
    }
    const int64_t size = m_config.size_ns, hop = m_config.hop_ns;
    bool any = false;
    for (int64_t start = floor_div(time, hop) * hop; start > time - size; start -= hop) {
        int64_t end = start + size;
        if (end <= watermark_before) break;  // this one and every earlier one have closed
        uint32_t p = 0;
        while (p < group.panes.size() && !(group.panes[p].open && group.panes[p].start == start)) ++p;
        if (p == group.panes.size()) p = open_pane(g, start, end);
        update(m_groups[g].panes[p], time);
        any = true;
    }
    return any;
}

Disposition Aggregator::process(const wire::Frame& frame, int64_t now_ns) {
    // Judged whole here, then read without Cap'n Proto's per-access bounds checks.
    if (auto reason = m_opener.open_checked(frame)) {
        m_garbled_reason = std::move(*reason);
        return Disposition::garbled;
    }
    auto message = m_opener.message();
    if (message.getControl().isBarrier()) {
        ++m_stats.barriers;
        m_stats.last_barrier = message.getControl().getBarrier().getNumber();
        return Disposition::barrier;
    }
    ++m_stats.messages;
    int64_t time = m_config.clock == Clock::wall ? now_ns : message.getTime();
    if (time > k_max_abs_time_ns || time < -k_max_abs_time_ns) {
        ++m_stats.late;
        return Disposition::late;
    }
    read_fields(message);
    encode_key(message);
    const int64_t watermark_before = m_watermark;
    uint32_t g = find_or_add_group(now_ns);
    if (!assign(g, time, watermark_before)) {
        ++m_stats.late;
        // A late message still tells the detectors that its source is alive.
        run_detectors(g, time, now_ns);
        return Disposition::late;
    }
    run_detectors(g, time, now_ns);
    if (time > m_max_time) {
        m_max_time = time;
        int64_t watermark = m_config.clock == Clock::wall ? time : time - m_config.lateness_ns;
        if (watermark > m_watermark) advance(watermark, now_ns);
    }
    return Disposition::used;
}

void Aggregator::tick(int64_t now_ns) {
    if (m_config.clock == Clock::wall && now_ns > m_watermark) advance(now_ns, now_ns);
}

void Aggregator::advance(int64_t watermark, int64_t now_ns) {
    m_watermark = std::max(m_watermark, watermark);
    close_due(m_watermark, now_ns);
    if (m_has_silence && (m_silence_checked == INT64_MIN || m_watermark - m_silence_checked >= m_silence_step))
        check_silence(now_ns);
}

void Aggregator::close_all(int64_t now_ns) {
    if (m_has_silence) check_silence(now_ns);
    int64_t last_end = close_due(INT64_MAX, now_ns);
    // What arrives for a closed window now is late, as it would be had the watermark passed.
    m_watermark = std::max(m_watermark, last_end);
}

// Emits and closes, in order of their end, the open windows that end at or before `limit`
// (entries of evicted groups or already closed panes are skipped); returns the last end closed.
int64_t Aggregator::close_due(int64_t limit, int64_t now_ns) {
    int64_t last_end = INT64_MIN;
    while (!m_due.empty() && m_due.top().end <= limit) {
        Due due = m_due.top();
        m_due.pop();
        Group& group = m_groups[due.group];
        if (group.generation != due.group_generation) continue;
        Pane& pane = group.panes[due.pane];
        if (!pane.open || pane.generation != due.pane_generation) continue;
        emit(due.group, due.pane, now_ns, false);
        close_pane(due.group, due.pane);
        last_end = std::max(last_end, due.end);
    }
    return last_end;
}

// ---- output ----

// One value of an encoded key at `at`, which moves past it; missing when the bytes run
// out (keys from a snapshot are checked on load, so that only guards).
expr::Value Aggregator::decode_key_value(std::string_view key, size_t& at) {
    if (at >= key.size()) return expr::Value::missing();
    auto tag = static_cast<uint8_t>(key[at++]);
    auto need = [&](size_t n) { return at + n <= key.size(); };
    switch (tag) {
        case tag_text: {
            uint32_t size;
            if (!need(4)) break;
            std::memcpy(&size, key.data() + at, 4);
            at += 4;
            if (!need(size)) break;
            expr::Value v = expr::Value::of_text(key.substr(at, size));
            at += size;
            return v;
        }
        case tag_int: {
            int64_t i;
            if (!need(8)) break;
            std::memcpy(&i, key.data() + at, 8);
            at += 8;
            return expr::Value::of_int(i);
        }
        case tag_float: {
            double f;
            if (!need(8)) break;
            std::memcpy(&f, key.data() + at, 8);
            at += 8;
            return expr::Value::of_float(f);
        }
        case tag_bool:
            if (!need(1)) break;
            return expr::Value::of_bool(key[at++] != 0);
        case tag_missing:
            return expr::Value::missing();
        default:
            break;
    }
    at = key.size() + 1;  // malformed: nothing more decodes, and valid_key() sees it
    return expr::Value::missing();
}

bool Aggregator::valid_key(std::string_view key) const {
    size_t at = 0;
    for (size_t k = 0; k < m_config.keys.size(); ++k) {
        decode_key_value(key, at);
        if (at > key.size()) return false;
    }
    return at == key.size();
}

void Aggregator::start_message(uint32_t g, std::string_view kind, int64_t time, int64_t now_ns,
                               uint64_t id_hash, unsigned extra_fields,
                               schema::Message::Builder& out,
                               capnp::List<schema::Field>::Builder& list, unsigned& next) {
    const Group& group = m_groups[g];
    out = m_builder.start();
    // A UUIDv7 made of the time and a hash of what the message is about: the same window
    // or alert has the same id on a replay, so a store deduplicates it.
    MessageId id{};
    uint64_t ms = static_cast<uint64_t>(std::max<int64_t>(time, 0) / 1'000'000);
    for (int i = 0; i < 6; ++i) id[static_cast<size_t>(i)] = static_cast<uint8_t>(ms >> (40 - 8 * i));
    uint64_t h = mix64(id_hash ^ mix64(group.hash));
    uint64_t h2 = mix64(h + 0x9e3779b97f4a7c15ULL);
    id[6] = static_cast<uint8_t>(0x70 | ((h >> 8) & 0x0f));
    id[7] = static_cast<uint8_t>(h);
    for (int i = 0; i < 8; ++i) id[static_cast<size_t>(8 + i)] = static_cast<uint8_t>(h2 >> (56 - 8 * i));
    id[8] = static_cast<uint8_t>((id[8] & 0x3f) | 0x80);
    out.setId(capnp::Data::Reader(id.data(), id.size()));
    out.setTime(time);
    out.setIngested(now_ns);
    copy_text(out.initKind(static_cast<unsigned>(kind.size())), kind);

    // Decode the key: headers go to the header, the rest are fields.
    unsigned key_fields = 0;
    struct Decoded {
        const KeySpec* spec;
        expr::Value value;
    };
    Decoded decoded[k_max_keys];
    size_t count = 0;
    const std::string_view key = group.key();
    size_t at = 0;
    for (const auto& spec : m_config.keys) {
        expr::Value v = decode_key_value(key, at);
        if (spec.kind == KeyKind::source && v.type == expr::Type::text)
            copy_text(out.initSource(static_cast<unsigned>(v.text.size())), v.text);
        else if (spec.kind == KeyKind::gateway && v.type == expr::Type::text)
            copy_text(out.initGateway(static_cast<unsigned>(v.text.size())), v.text);
        else if (v.type != expr::Type::missing && count < std::size(decoded)) {
            decoded[count++] = {&spec, v};
            ++key_fields;
        }
    }
    list = out.initFields(key_fields + extra_fields);
    next = 0;
    for (size_t k = 0; k < count; ++k) {
        auto field = list[next++];
        set_name(field, decoded[k].spec->kind == KeyKind::kind ? k_input_kind_field
                                                               : std::string_view(decoded[k].spec->name));
        set_value(field.getValue(), decoded[k].value);
    }
}

void Aggregator::emit(uint32_t g, uint32_t p, int64_t now_ns, bool evicted) {
    const Pane& pane = m_groups[g].panes[p];
    const double seconds = seconds_between(pane.start, pane.end);
    // First pass: which aggregates have a value (no values: the field is left out).
    auto value_of_agg = [&](size_t a, expr::Value& out) -> bool {
        const AggSpec& spec = m_config.aggs[a];
        const Acc& acc = pane.accs[a];
        switch (spec.kind) {
            case AggKind::count:
                out = expr::Value::of_int(static_cast<int64_t>(spec.field.empty() ? pane.count : acc.n));
                return true;
            case AggKind::sum:
                if (acc.n == 0) return false;
                out = acc.all_int ? expr::Value::of_int(acc.int_sum) : expr::Value::of_float(acc.sum);
                return true;
            case AggKind::mean:
                if (acc.n == 0) return false;
                out = expr::Value::of_float(acc.sum / static_cast<double>(acc.n));
                return true;
            case AggKind::stddev:
                if (acc.n < 2) return false;
                out = expr::Value::of_float(std::sqrt(acc.m2 / static_cast<double>(acc.n - 1)));
                return true;
            case AggKind::min:
                if (acc.n == 0) return false;
                out = acc.min;
                return true;
            case AggKind::max:
                if (acc.n == 0) return false;
                out = acc.max;
                return true;
            case AggKind::first:
                if (acc.n == 0) return false;
                out = acc.first.get();
                return true;
            case AggKind::last:
                if (acc.n == 0) return false;
                out = acc.last.get();
                return true;
            case AggKind::rate:
                if (spec.field.empty()) {
                    if (seconds <= 0) return false;
                    out = expr::Value::of_float(static_cast<double>(pane.count) / seconds);
                    return true;
                }
                if (acc.n < 2 || acc.last_time <= acc.first_time) return false;
                out = expr::Value::of_float((as_double(acc.last.get()) - as_double(acc.first.get())) /
                                            seconds_between(acc.first_time, acc.last_time));
                return true;
            case AggKind::quantile:
                if (acc.n == 0) return false;
                out = expr::Value::of_float(acc.sketch->quantile(spec.quantile));
                return true;
            case AggKind::distinct:
                out = expr::Value::of_int(static_cast<int64_t>(acc.distinct->estimate()));
                return true;
        }
        return false;
    };
    unsigned present = 0;
    expr::Value value;
    for (size_t a = 0; a < m_config.aggs.size(); ++a)
        if (value_of_agg(a, value)) ++present;

    schema::Message::Builder out = nullptr;
    capnp::List<schema::Field>::Builder list;
    unsigned next = 0;
    uint64_t id_hash = mix64(static_cast<uint64_t>(pane.start)) ^ static_cast<uint64_t>(pane.end);
    start_message(g, k_aggregate_kind, pane.end, now_ns, id_hash, 2 + (evicted ? 1 : 0) + present, out,
                  list, next);
    // The key fields (start_message wrote them), the window, then the aggregates.
    auto window_start = list[next++];
    set_name(window_start, k_window_start_field);
    window_start.getValue().setInt(pane.start);
    auto window_end = list[next++];
    set_name(window_end, k_window_end_field);
    window_end.getValue().setInt(pane.end);
    if (evicted) {
        auto field = list[next++];
        set_name(field, k_evicted_field);
        field.getValue().setBool(true);
    }
    for (size_t a = 0; a < m_config.aggs.size(); ++a) {
        if (!value_of_agg(a, value)) continue;
        auto field = list[next++];
        set_name(field, m_config.aggs[a].name);
        set_value(field.getValue(), value);
    }
    finish_frame();
    ++m_stats.windows;
}

void Aggregator::finish_frame() {
    wire::append_frame(m_builder.builder(), m_output);
    m_frame_ends.push_back(m_output.size());
}

std::span<const wire::Frame> Aggregator::output() {
    m_frames.clear();
    size_t begin = 0;
    for (size_t end : m_frame_ends) {
        m_frames.push_back({reinterpret_cast<const capnp::word*>(m_output.data() + begin),
                            (end - begin) / sizeof(capnp::word)});
        begin = end;
    }
    return m_frames;
}

void Aggregator::take_output() {
    m_output.clear();
    m_frame_ends.clear();
}

// ---- detectors ----

void Aggregator::run_detectors(uint32_t g, int64_t time, int64_t now_ns) {
    Group& group = m_groups[g];
    group.last_time = std::max(group.last_time, time);
    for (size_t d = 0; d < m_config.detects.size(); ++d) {
        const DetectSpec& rule = m_config.detects[d];
        Detector& state = group.detectors[d];
        switch (rule.kind) {
            case DetectKind::silence:
                state.alerted = false;  // it spoke: a later silence is a new one
                break;
            case DetectKind::stuck: {
                const expr::Value& v = m_values[static_cast<size_t>(m_detect_slot[d])];
                if (v.type == expr::Type::missing) break;
                if (state.value.type == expr::Type::missing || !state.value.equals(v)) {
                    state.value.set(v);
                    state.since = time;
                    state.n = 1;
                    state.alerted = false;
                } else if (++state.n >= k_stuck_min_reports && !state.alerted &&
                           minus(time, state.since) >= rule.duration_ns) {
                    state.alerted = true;
                    emit_alert(g, rule, time, now_ns, seconds_between(state.since, time),
                               "duration", &v, state.since);
                }
                break;
            }
            case DetectKind::zscore: {
                const expr::Value& v = m_values[static_cast<size_t>(m_detect_slot[d])];
                if (!numeric(v)) break;
                double x = as_double(v);
                if (!std::isfinite(x)) break;
                // Warm up with exact running moments, then move to exponential weights.
                const auto warmup = static_cast<uint64_t>(std::ceil(2 / rule.alpha));
                if (state.n < warmup) {
                    ++state.n;
                    double delta = x - state.mean;
                    state.mean += delta / static_cast<double>(state.n);
                    state.m2 += delta * (x - state.mean);
                    state.variance = state.n > 1 ? state.m2 / static_cast<double>(state.n - 1) : 0;
                    break;
                }
                ++state.n;
                double stddev = std::sqrt(state.variance);
                double deviation = x - state.mean;
                if (stddev > 0) {
                    double z = deviation / stddev;
                    if (std::fabs(z) > rule.threshold) emit_alert(g, rule, time, now_ns, z, "score", &v, 0);
                    // An outlier moves the baseline only as far as the threshold: one spike
                    // must not blind the detector to the next.
                    double bound = rule.threshold * stddev;
                    deviation = std::clamp(deviation, -bound, bound);
                }
                state.mean += rule.alpha * deviation;
                state.variance = (1 - rule.alpha) * (state.variance + rule.alpha * deviation * deviation);
                break;
            }
        }
    }
}

void Aggregator::check_silence(int64_t now_ns) {
    m_silence_checked = m_watermark;
    if (m_watermark == INT64_MIN) return;
    for (uint32_t g = 0; g < m_groups.size(); ++g) {
        Group& group = m_groups[g];
        if (!group.in_use || group.last_time == INT64_MIN) continue;
        for (size_t d = 0; d < m_config.detects.size(); ++d) {
            const DetectSpec& rule = m_config.detects[d];
            Detector& state = group.detectors[d];
            if (rule.kind != DetectKind::silence || state.alerted) continue;
            int64_t silent = minus(m_watermark, group.last_time);
            if (silent < rule.duration_ns) continue;
            state.alerted = true;
            emit_alert(g, rule, m_watermark, now_ns, static_cast<double>(silent) / 1e9, "duration",
                       nullptr, group.last_time);
        }
    }
}

void Aggregator::emit_alert(uint32_t g, const DetectSpec& rule, int64_t time, int64_t now_ns,
                            double score, std::string_view score_name, const expr::Value* value,
                            int64_t since) {
    const Detector* state = nullptr;
    for (size_t d = 0; d < m_config.detects.size(); ++d)
        if (&m_config.detects[d] == &rule) state = &m_groups[g].detectors[d];
    const std::string_view detector = rule.kind == DetectKind::zscore  ? "zscore"
                                      : rule.kind == DetectKind::stuck ? "stuck"
                                                                       : "silence";
    const bool has_field = !rule.field.empty();
    const bool has_value = value && value->type != expr::Type::missing;
    const bool zscore = rule.kind == DetectKind::zscore;
    unsigned extra = 3 + (has_field ? 1 : 0) + (has_value ? 1 : 0) + (zscore ? 2 : 1);
    schema::Message::Builder out = nullptr;
    capnp::List<schema::Field>::Builder list;
    unsigned next = 0;
    uint64_t id_hash = hash_bytes(std::as_bytes(std::span(rule.name.data(), rule.name.size()))) ^
                       mix64(static_cast<uint64_t>(time));
    start_message(g, k_alert_kind, time, now_ns, id_hash, extra, out, list, next);
    auto text_field = [&](std::string_view name, std::string_view text) {
        auto field = list[next++];
        set_name(field, name);
        copy_text(field.getValue().initText(static_cast<unsigned>(text.size())), text);
    };
    auto number_field = [&](std::string_view name, const expr::Value& v) {
        auto field = list[next++];
        set_name(field, name);
        set_value(field.getValue(), v);
    };
    text_field("rule", rule.name);
    text_field("detector", detector);
    if (has_field) text_field("field", rule.field);
    number_field(score_name, expr::Value::of_float(score));
    if (has_value) number_field("value", *value);
    if (zscore) {
        number_field("mean", expr::Value::of_float(state ? state->mean : 0));
        number_field("stddev", expr::Value::of_float(state ? std::sqrt(state->variance) : 0));
    } else {
        number_field(rule.kind == DetectKind::silence ? "last_seen" : "since", expr::Value::of_int(since));
    }
    finish_frame();
    ++m_stats.alerts;
}

// ---- state ----
//
// Layout (little endian): magic, the fingerprint, clocks, then each group from the least
// to the most recently seen (so the LRU order comes back): key, last time, detectors,
// open panes with their accumulators. Every length is checked against what remains.

namespace {

constexpr uint64_t k_state_magic = 0x3147474148'4d00ULL;  // "\0MHAGG1"
constexpr size_t k_max_state_text = 1 << 20;

void put_value(std::string& out, const expr::Value& v) {
    put_u64(out, static_cast<uint64_t>(v.type));
    put_u64(out, static_cast<uint64_t>(v.integer));
    put_f64(out, v.floating);
    put_u64(out, v.boolean ? 1 : 0);
}
bool get_value(std::span<const std::byte>& in, expr::Value& v) {
    uint64_t type, integer, boolean;
    if (!get_u64(in, type) || !get_u64(in, integer) || !get_f64(in, v.floating) || !get_u64(in, boolean))
        return false;
    if (type > static_cast<uint64_t>(expr::Type::text) || type == static_cast<uint64_t>(expr::Type::text))
        return false;  // min and max are numbers; text has no place here
    v.type = static_cast<expr::Type>(type);
    v.integer = static_cast<int64_t>(integer);
    v.boolean = boolean != 0;
    return true;
}
void put_held(std::string& out, const Held& h) {
    put_value(out, expr::Value{h.type == expr::Type::text ? expr::Type::missing : h.type, h.boolean,
                               h.integer, h.floating, {}});
    put_u64(out, h.type == expr::Type::text ? 1 : 0);
    put_bytes(out, h.type == expr::Type::text ? std::string_view(h.text) : std::string_view());
}
bool get_held(std::span<const std::byte>& in, Held& h) {
    expr::Value v;
    uint64_t is_text;
    if (!get_value(in, v) || !get_u64(in, is_text) || is_text > 1 || !get_bytes(in, h.text, k_max_state_text))
        return false;
    h.type = is_text ? expr::Type::text : v.type;
    h.boolean = v.boolean;
    h.integer = v.integer;
    h.floating = v.floating;
    return true;
}

}  // namespace

void Aggregator::save(std::string& out) const {
    out.clear();
    put_u64(out, k_state_magic);
    put_u64(out, fingerprint());
    put_u64(out, static_cast<uint64_t>(m_max_time));
    put_u64(out, static_cast<uint64_t>(m_watermark));
    put_u64(out, static_cast<uint64_t>(m_silence_checked));
    put_u64(out, m_seq);
    put_u64(out, groups());
    std::vector<uint32_t> order;
    for (uint32_t g = 0; g < m_groups.size(); ++g)
        if (m_groups[g].in_use) order.push_back(g);
    std::sort(order.begin(), order.end(),
              [&](uint32_t a, uint32_t b) { return m_groups[a].last_seen < m_groups[b].last_seen; });
    for (uint32_t g : order) {
        const Group& group = m_groups[g];
        put_bytes(out, group.key());
        put_u64(out, static_cast<uint64_t>(group.last_time));
        for (const Detector& d : group.detectors) {
            put_u64(out, d.n);
            put_f64(out, d.mean);
            put_f64(out, d.variance);
            put_f64(out, d.m2);
            put_held(out, d.value);
            put_u64(out, static_cast<uint64_t>(d.since));
            put_u64(out, d.alerted ? 1 : 0);
        }
        uint64_t open = 0;
        for (const Pane& pane : group.panes) open += pane.open ? 1 : 0;
        put_u64(out, open);
        for (const Pane& pane : group.panes) {
            if (!pane.open) continue;
            put_u64(out, static_cast<uint64_t>(pane.start));
            put_u64(out, static_cast<uint64_t>(pane.end));
            put_u64(out, pane.seq);
            put_u64(out, pane.count);
            for (const Acc& acc : pane.accs) {
                put_u64(out, acc.n);
                put_f64(out, acc.sum);
                put_u64(out, static_cast<uint64_t>(acc.int_sum));
                put_u64(out, acc.all_int ? 1 : 0);
                put_f64(out, acc.mean);
                put_f64(out, acc.m2);
                put_value(out, acc.min);
                put_value(out, acc.max);
                put_held(out, acc.first);
                put_held(out, acc.last);
                put_u64(out, static_cast<uint64_t>(acc.first_time));
                put_u64(out, static_cast<uint64_t>(acc.last_time));
                if (acc.sketch) acc.sketch->write(out);
                if (acc.distinct) acc.distinct->write(out);
            }
        }
    }
}

void Aggregator::clear_state() {
    m_slots.clear();
    m_slots_used = 0;
    m_groups.clear();
    m_free_groups.clear();
    m_stamp = 0;
    m_open_panes = 0;
    m_due = {};
    m_seq = 0;
    m_max_time = m_watermark = m_silence_checked = INT64_MIN;
}

std::optional<std::string> Aggregator::load(std::span<const std::byte> in) {
    clear_state();
    auto fail = [&](std::string why) {
        clear_state();
        return std::optional<std::string>(std::move(why));
    };
    uint64_t magic, fp, max_time, watermark, silence_checked, seq, group_count;
    if (!get_u64(in, magic) || magic != k_state_magic) return fail("not an mh-aggregate snapshot");
    if (!get_u64(in, fp)) return fail("truncated header");
    if (fp != fingerprint()) return fail("saved with other windows, keys, aggregates or rules");
    if (!get_u64(in, max_time) || !get_u64(in, watermark) || !get_u64(in, silence_checked) ||
        !get_u64(in, seq) || !get_u64(in, group_count))
        return fail("truncated header");
    if (group_count > m_config.max_groups)
        return fail(fmt::format("{} groups, more than --max-groups {}", group_count, m_config.max_groups));
    // Times are either "never" or within bounds, so that no difference of two overflows.
    auto valid_time = [](uint64_t bits, bool never_allowed) {
        auto t = static_cast<int64_t>(bits);
        return (never_allowed && t == INT64_MIN) || (t >= -k_max_abs_state_ns && t <= k_max_abs_state_ns);
    };
    if (!valid_time(max_time, true) || !valid_time(watermark, true) || !valid_time(silence_checked, true))
        return fail("a clock out of range");
    m_max_time = static_cast<int64_t>(max_time);
    m_watermark = static_cast<int64_t>(watermark);
    m_silence_checked = static_cast<int64_t>(silence_checked);
    const uint64_t max_panes = m_config.window == WindowKind::hopping
                                   ? static_cast<uint64_t>(m_config.size_ns / m_config.hop_ns) + 64
                                   : 1024;
    for (uint64_t i = 0; i < group_count; ++i) {
        if (!get_bytes(in, m_key, k_max_state_text)) return fail("truncated group key");
        if (!valid_key(m_key)) return fail("a malformed group key");
        if (index_find(hash_key(m_key), m_key) != UINT32_MAX) return fail("a group saved twice");
        uint32_t g = find_or_add_group(0);
        Group& group = m_groups[g];
        uint64_t last_time;
        if (!get_u64(in, last_time)) return fail("truncated group");
        if (!valid_time(last_time, true)) return fail("a group time out of range");
        group.last_time = static_cast<int64_t>(last_time);
        for (Detector& d : group.detectors) {
            uint64_t since, alerted;
            if (!get_u64(in, d.n) || !get_f64(in, d.mean) || !get_f64(in, d.variance) || !get_f64(in, d.m2) ||
                !get_held(in, d.value) || !get_u64(in, since) || !get_u64(in, alerted))
                return fail("truncated detector");
            if (!valid_time(since, false) || !(d.variance >= 0) || !std::isfinite(d.mean))
                return fail("a detector out of range");
            d.since = static_cast<int64_t>(since);
            d.alerted = alerted != 0;
        }
        uint64_t open;
        if (!get_u64(in, open) || open > max_panes) return fail("bad count of open windows");
        for (uint64_t k = 0; k < open; ++k) {
            uint64_t start, end, seq, count;
            if (!get_u64(in, start) || !get_u64(in, end) || !get_u64(in, seq) || !get_u64(in, count))
                return fail("truncated window");
            if (!valid_time(start, false) || !valid_time(end, false) ||
                static_cast<int64_t>(end) <= static_cast<int64_t>(start))
                return fail("a window out of range");
            if (m_config.window != WindowKind::session &&
                (static_cast<int64_t>(end) - static_cast<int64_t>(start) != m_config.size_ns ||
                 static_cast<int64_t>(start) % m_config.hop_ns != 0))
                return fail("a window not on this --window and --hop");
            uint32_t p = open_pane(g, static_cast<int64_t>(start), static_cast<int64_t>(end));
            Pane& pane = m_groups[g].panes[p];
            pane.seq = seq;
            pane.count = count;
            for (Acc& acc : pane.accs) {
                uint64_t int_sum, all_int, first_time, last_time_acc;
                if (!get_u64(in, acc.n) || !get_f64(in, acc.sum) || !get_u64(in, int_sum) ||
                    !get_u64(in, all_int) || !get_f64(in, acc.mean) || !get_f64(in, acc.m2) ||
                    !get_value(in, acc.min) || !get_value(in, acc.max) || !get_held(in, acc.first) ||
                    !get_held(in, acc.last) || !get_u64(in, first_time) || !get_u64(in, last_time_acc))
                    return fail("truncated aggregate");
                acc.int_sum = static_cast<int64_t>(int_sum);
                acc.all_int = all_int != 0;
                if (!valid_time(first_time, false) || !valid_time(last_time_acc, false))
                    return fail("an aggregate time out of range");
                acc.first_time = static_cast<int64_t>(first_time);
                acc.last_time = static_cast<int64_t>(last_time_acc);
                if (acc.sketch && !acc.sketch->read(in)) return fail("bad percentile sketch");
                if (acc.distinct && !acc.distinct->read(in)) return fail("bad distinct-count sketch");
            }
            schedule(g, p);  // with the saved seq (open_pane's entry is now stale)
        }
    }
    m_seq = seq;
    if (!in.empty()) return fail(fmt::format("{} bytes after the last group", in.size()));
    return std::nullopt;
}

}  // namespace mh::aggregate
