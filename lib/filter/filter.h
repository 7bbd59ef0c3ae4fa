// mh-filter: passes the messages for which an expression holds, reshapes them (computed
// fields, renames, drops, a new kind), raises alert messages on boundary checks, samples
// consistently by id and drops duplicates within a window. Filter decides about one frame
// at a time without processes or sockets (what the tests drive); run() is the tool's loop.
//
// Per message, in this order:
//   1. a checkpoint barrier goes on at once to every output, in order;
//   2. --dedup, then --sample, may drop it;
//   3. EXPR (or its opposite with --invert) decides: pass, or reject (to --rejects, or dropped);
//   4. on a passing message the --set expressions run in order, each seeing the ones before,
//      then --rename, --drop, --keep and --kind shape the output;
//   5. each --alert rule that holds on the message after --set (with the input's field
//      names) raises one alert message.
#pragma once

#include "cli/tool.h"
#include "expr/expr.h"
#include "filter/dedup.h"
#include "message/id.h"
#include "message/scratch_builder.h"
#include "wire/frame.h"
#include "wire/frame_opener.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mh::filter {

constexpr std::string_view k_alert_kind = "alert";

// What to do with each message, as given on the command line. Filter compiles it.
struct FilterRules {
    std::string expression;            // EXPR; empty: every message passes
    bool invert = false;               // pass the messages for which EXPR does not hold
    std::vector<std::string> sets;     // NAME=EXPR, run in order
    std::vector<std::string> renames;  // OLD=NEW
    std::vector<std::string> drop;     // field names as they are after --rename
    std::vector<std::string> keep;     // field names as they are after --rename; empty: all
    std::string kind;                  // the passing messages' new kind; empty: unchanged
    std::vector<std::string> alerts;   // [NAME=]EXPR
    double sample = 1;                 // share of messages kept, 0 < sample <= 1, by id hash
    std::string dedup;                 // window of id time ("10m"); empty: no deduplication
    uint64_t dedup_max = k_default_dedup_max;  // ids remembered at most
};

struct FilterOptions {
    cli::CommonOptions common;
    FilterRules rules;
    std::string rejects;    // where messages failing EXPR go; empty: they are dropped
    std::string alert_out;  // where alerts go; empty: into the data stream after their message
};

enum class Verdict : uint8_t {
    pass,       // write `frame`, then `alerts`, to the data outputs
    filtered,   // EXPR did not hold: `frame` is the input unchanged, for --rejects
    duplicate,  // seen before within the --dedup window: dropped
    sampled,    // outside the --sample share: dropped
    barrier,    // a checkpoint barrier: `frame` (the input) goes to every output at once
    garbled,    // the frame cannot be read: `reason` says why; for the dead-letter output
};

// Points into the input frame or the filter's own buffers: valid until the next process().
struct Decision {
    Verdict verdict;
    wire::Frame frame;
    std::span<const wire::Frame> alerts;  // only with Verdict::pass
    std::string_view reason = {};         // only with Verdict::garbled
};

// Running totals since construction.
struct FilterStats {
    uint64_t messages = 0;  // every frame given to process(), barriers included
    uint64_t passed = 0;
    uint64_t filtered = 0;
    uint64_t duplicate = 0;
    uint64_t sampled = 0;
    uint64_t barriers = 0;
    uint64_t alerts = 0;
    // Passing messages that a transform changed (the rest go out as they came).
    uint64_t rebuilt = 0;
    uint64_t garbled = 0;  // frames that could not be read (not counted in `messages`)
};

// "hot=temperature > 30" names its rule "hot"; "temperature > 30" is named by its text.
// A name is [A-Za-z_][A-Za-z0-9_.-]* followed by optional spaces and a single '=' (not
// '==' nor '=~').
struct NamedRule {
    std::string name;
    std::string expression;
};
NamedRule split_alert_rule(std::string_view text);

// An alert's id: the original's millisecond timestamp, version and variant bits, and the
// rest of the original mixed with a hash of the rule's name. The same message and rule
// always give the same alert id (replays deduplicate), different rules different ids.
MessageId derive_alert_id(std::span<const uint8_t, 16> original, std::string_view rule_name);

// Whether a --sample of `rate` keeps the message with this id: its hash is below
// rate * 2^64, so every run, and every replica, keeps the same messages.
bool sample_keeps(std::span<const uint8_t, 16> id, double rate);

class Filter {
  public:
    // Compiles every rule. Throws Error(usage) for a bad rule: for a bad expression the
    // text names the option and shows the expression with a caret under the error,
    // aligned for `log`'s "<tool>: error: " prefix. `log` gets the one-time warning when
    // --dedup-max forces ids out before their window ended.
    Filter(const FilterRules& rules, const wire::FrameLimits& limits, Log& log);
    ~Filter();
    Filter(const Filter&) = delete;
    Filter& operator=(const Filter&) = delete;

    // Decides about one frame, garbled or not. `now_ns` is what now() gives in expressions.
    Decision process(const wire::Frame& frame, int64_t now_ns);

    const FilterStats& stats() const { return m_stats; }
    uint64_t dedup_evicted() const { return m_dedup ? m_dedup->evicted() : 0; }
    bool has_alerts() const { return !m_alerts.empty(); }

  private:
    Decision decide(const wire::Frame& frame, int64_t now_ns);

    struct SetRule {
        uint32_t slot;
        expr::Expression expression;
    };
    struct AlertRule {
        std::string name;
        expr::Expression expression;
        uint64_t name_hash;  // what the derived alert ids mix in
    };
    struct Rename {
        uint32_t from;
        uint32_t to;
    };
    enum class From : uint8_t { input, set };
    struct Planned {    // one field of the rebuilt message
        int32_t index;  // into the input's fields, or -1 for an appended --set field
        int32_t slot;   // its slot, or -1 for a field no rule names
        From from;
    };

    expr::Expression compile(std::string_view what, std::string_view text);
    std::optional<Verdict> dedup_and_sample(std::string_view id);
    bool needs_rebuild(schema::Message::Reader message);
    void build_output(schema::Message::Reader message);
    void build_alert(schema::Message::Reader message, const AlertRule& rule);
    void finish_frame();
    bool present(uint32_t slot) const;

    Log& m_log;
    wire::FrameOpener m_opener;
    wire::MessageView m_view;  // the frame just opened, when in mh's own layout
    std::string m_garbled_reason;
    expr::Symbols m_symbols;
    std::optional<expr::Expression> m_expression;
    bool m_invert = false;
    std::vector<SetRule> m_sets;
    std::vector<uint32_t> m_appended;  // --set slots in first-mention order, each once
    std::vector<Rename> m_renames;
    std::vector<AlertRule> m_alerts;
    std::string m_kind;
    bool m_keep_only = false;  // --keep given: fields no rule names are dropped
    bool m_shapes = false;     // any --set, --rename, --drop, --keep or --kind
    bool m_needs_record = false;
    uint64_t m_sample_threshold = 0;
    bool m_sampling = false;
    uint64_t m_unnamed = 0;  // counts id-less messages, whose sampling hash is of the count
    std::unique_ptr<DedupSet> m_dedup;
    bool m_warned_eviction = false;

    // Per slot, fixed after construction.
    std::vector<std::string> m_out_name;  // the name after --rename
    std::vector<char> m_renamed;
    std::vector<char> m_omitted;  // by --drop or --keep

    // Reused from message to message: nothing here allocates once warm.
    std::optional<expr::Record> m_record;
    expr::Scratch m_scratch;
    std::vector<int32_t> m_slot_of_index;
    std::vector<char> m_replaced;  // this message: a field that a renamed one replaces
    std::vector<Planned> m_plan;
    ScratchBuilder m_builder;
    std::vector<std::byte> m_output;  // rebuilt message and alerts, frames back to back
    std::vector<size_t> m_frame_ends;
    std::vector<wire::Frame> m_frames;
    FilterStats m_stats;
};

// The tool: frames from --in through a Filter to --out (each gets every passing message),
// --rejects and --alert-out; flushes when the input goes idle; serves the counters.
int run(const FilterOptions& options, cli::ToolContext& context);

}  // namespace mh::filter
