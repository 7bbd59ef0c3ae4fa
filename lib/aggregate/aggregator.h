// mh-aggregate's engine: assigns each message to time windows (tumbling, hopping or
// session) per group of --by keys, keeps the aggregates of every open window, closes
// windows when the watermark passes their end and emits one `aggregate` message per
// window and group. No processes or sockets here: what the unit tests drive.
//
// Time: event time by default. The watermark is the largest event time seen minus
// --lateness; a window [start, end) closes once the watermark reaches `end`. A message
// all of whose windows have closed is late: counted and handed back (for --late). With
// --clock wall the arrival time replaces event time and the watermark is the clock.
//
// Memory: groups live in a hash map keyed by the encoded key values, with their panes
// (open windows) and accumulators reused from window to window, so a message in the
// steady state allocates nothing. At most --max-groups groups: a new one evicts the
// least recently seen, whose open windows are emitted early (marked evicted=true).
#pragma once

#include "aggregate/sketch.h"
#include "aggregate/spec.h"
#include "core/log.h"
#include "expr/expr.h"
#include "message/scratch_builder.h"
#include "wire/frame.h"
#include "wire/frame_opener.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <deque>
#include <vector>

namespace mh::aggregate {

enum class WindowKind : uint8_t { tumbling, hopping, session };
enum class Clock : uint8_t { event, wall };

constexpr int64_t k_default_lateness_ns = 5'000'000'000;
constexpr uint64_t k_default_max_groups = 100'000;
constexpr uint64_t k_max_hops_per_window = 1000;  // --window / --hop
constexpr size_t k_exact_lru_groups = 256;  // up to this many groups eviction is exact LRU
constexpr size_t k_lru_samples = 64;        // beyond, the oldest of this many sampled groups

struct AggregatorConfig {
    WindowKind window = WindowKind::tumbling;
    int64_t size_ns = 0;  // tumbling and hopping
    int64_t hop_ns = 0;   // hopping
    int64_t gap_ns = 0;   // session
    int64_t lateness_ns = k_default_lateness_ns;
    Clock clock = Clock::event;
    uint64_t max_groups = k_default_max_groups;
    std::vector<KeySpec> keys;
    std::vector<AggSpec> aggs;
    std::vector<DetectSpec> detects;
};

enum class Disposition : uint8_t {
    used,     // counted in its open windows (and detectors)
    late,     // every window it belongs to had closed: counted, for --late
    barrier,  // a checkpoint barrier: the caller writes output(), then the barrier
    garbled,  // the frame cannot be read: garbled_reason() says why
};

struct AggregatorStats {
    uint64_t messages = 0;  // data messages given to process()
    uint64_t late = 0;
    uint64_t barriers = 0;
    uint64_t last_barrier = 0;  // the number of the last barrier seen
    uint64_t windows = 0;   // aggregate messages emitted
    uint64_t alerts = 0;
    uint64_t evicted = 0;   // groups forced out by --max-groups
    uint64_t evicted_windows = 0;  // windows those groups had open, emitted early
};

class Aggregator {
  public:
    // Throws Error(usage) for a configuration that cannot work (no window, hop > size...).
    Aggregator(AggregatorConfig config, const wire::FrameLimits& limits, Log& log);
    ~Aggregator();
    Aggregator(const Aggregator&) = delete;
    Aggregator& operator=(const Aggregator&) = delete;

    // One frame, garbled or not. `now_ns` is the wall clock: the message's
    // time under --clock wall, and the `ingested` of what is emitted. Emitted frames
    // accumulate in output() until take_output().
    Disposition process(const wire::Frame& frame, int64_t now_ns);
    const std::string& garbled_reason() const { return m_garbled_reason; }

    // The wall clock moved (--clock wall): windows that ended close.
    void tick(int64_t now_ns);
    // Every open window closes now (end of input, --idle), in order of end.
    void close_all(int64_t now_ns);

    std::span<const wire::Frame> output();
    bool has_output() const { return !m_frame_ends.empty(); }
    void take_output();  // forget what output() returned

    const AggregatorStats& stats() const { return m_stats; }
    int64_t watermark() const { return m_watermark; }
    size_t groups() const;
    size_t open_windows() const { return m_open_panes; }
    const AggregatorConfig& config() const { return m_config; }

    // A hash of everything that decides what state means: a snapshot taken under other
    // windows, keys or aggregates cannot be restored.
    uint64_t fingerprint() const;
    // Binary snapshot of the open windows, groups, detectors and clocks (see state.h).
    void save(std::string& out) const;
    // Replaces the state with a snapshot's. On bad bytes returns what is wrong, and the
    // aggregator is left empty.
    std::optional<std::string> load(std::span<const std::byte> in);

  private:
    struct Acc;
    struct Pane;
    struct Group;
    struct Detector;
    struct Due {
        int64_t end;
        int64_t start;
        uint64_t seq;
        uint32_t group;
        uint32_t pane;
        uint32_t group_generation;
        uint32_t pane_generation;
        bool operator>(const Due& other) const {
            if (end != other.end) return end > other.end;
            if (start != other.start) return start > other.start;
            return seq > other.seq;
        }
    };
    // The group index: open addressing with linear probing over (hash, group) pairs, so a
    // lookup touches one flat array and, on a hash match, the group's key.
    // Eight bytes a slot, so the table of 10,000 groups stays in the L2 cache; the full
    // hash (for the slot's home) is in the group.
    struct Slot {
        uint32_t tag = 0;             // the hash's high half
        uint32_t group = UINT32_MAX;  // UINT32_MAX: empty
    };

    void read_fields(schema::Message::Reader message);
    void encode_key(schema::Message::Reader message);
    uint32_t find_or_add_group(int64_t now_ns);
    uint32_t index_find(uint64_t hash, std::string_view key) const;
    void index_insert(uint64_t hash, uint32_t group);
    void index_erase(uint64_t hash, uint32_t group);
    void touch(uint32_t group);
    uint32_t eviction_victim();
    void evict(uint32_t group, int64_t now_ns);
    bool assign(uint32_t group, int64_t time, int64_t watermark_before);
    uint32_t open_pane(uint32_t group, int64_t start, int64_t end);
    void update(Pane& pane, int64_t time);
    void schedule(uint32_t group, uint32_t pane);
    void merge_sessions(uint32_t group, uint32_t pane);
    void advance(int64_t watermark, int64_t now_ns);
    int64_t close_due(int64_t limit, int64_t now_ns);
    void emit(uint32_t group, uint32_t pane, int64_t now_ns, bool evicted);
    void close_pane(uint32_t group, uint32_t pane);
    void run_detectors(uint32_t group, int64_t time, int64_t now_ns);
    void check_silence(int64_t now_ns);
    void emit_alert(uint32_t group, const DetectSpec& rule, int64_t time, int64_t now_ns,
                    double score, std::string_view score_name, const expr::Value* value,
                    int64_t since);
    void start_message(uint32_t group, std::string_view kind, int64_t time, int64_t now_ns,
                       uint64_t id_hash, unsigned extra_fields,
                       schema::Message::Builder& out, capnp::List<schema::Field>::Builder& list,
                       unsigned& next);
    void finish_frame();
    void clear_state();
    static expr::Value decode_key_value(std::string_view key, size_t& at);
    bool valid_key(std::string_view key) const;

    AggregatorConfig m_config;
    Log& m_log;
    wire::FrameOpener m_opener;
    std::string m_garbled_reason;

    // Fields the configuration reads, by slot; per message their values (text views into
    // the frame) and whether present.
    std::vector<std::string> m_field_names;
    std::vector<expr::Value> m_values;
    std::vector<KeyKind> m_slot_kind;    // per slot: a field, or the header it names
    std::vector<int32_t> m_agg_slot;     // per aggregate: slot of its field, -1 none
    std::vector<int32_t> m_key_slot;     // per key: slot for field keys
    std::vector<int32_t> m_detect_slot;  // per detector: slot of its field, -1 none
    bool m_needs_value_types = false;

    std::string m_key;  // this message's encoded key, reused
    std::vector<Slot> m_slots;  // a power of two, at most half full
    size_t m_slots_used = 0;
    std::deque<Group> m_groups;  // stable addresses, indexed by group number
    std::vector<uint32_t> m_free_groups;
    uint64_t m_stamp = 0;         // counts messages: Group::last_seen
    uint64_t m_sample_state = 1;  // eviction sampling (deterministic)
    size_t m_open_panes = 0;

    std::priority_queue<Due, std::vector<Due>, std::greater<>> m_due;
    uint64_t m_seq = 0;
    int64_t m_max_time = INT64_MIN;
    int64_t m_watermark = INT64_MIN;
    int64_t m_silence_checked = INT64_MIN;
    int64_t m_silence_step = 0;
    bool m_has_silence = false;
    bool m_warned_eviction = false;

    ScratchBuilder m_builder;
    std::vector<std::byte> m_output;
    std::vector<size_t> m_frame_ends;
    std::vector<wire::Frame> m_frames;
    AggregatorStats m_stats;
};

}  // namespace mh::aggregate
