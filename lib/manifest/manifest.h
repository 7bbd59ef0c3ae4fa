// A channel manifest (TOML, see man 5 mh-route): stages, their inputs and edge conditions,
// hosts and defaults, read into plain values with the place in the file of each. Loading
// collects every problem it finds, each with its line, column and what to do, so that one
// `mh-route check` shows them all. No sockets or processes here: this module is fuzzed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mh::manifest {

constexpr uint32_t k_max_replicas = 64;
constexpr size_t k_max_stages = 256;
constexpr size_t k_max_name_chars = 64;
constexpr int64_t k_default_restart_delay_ns = 500'000'000;
constexpr int64_t k_default_restart_max_delay_ns = 30'000'000'000;
constexpr int64_t k_default_drain_timeout_ns = 60'000'000'000;
constexpr int64_t k_default_drain_quiet_ns = 2'000'000'000;
constexpr uint32_t k_default_base_port = 7400;

// 1-based line and column in the manifest; 0 when a problem has no single place.
struct Location {
    uint32_t line = 0;
    uint32_t column = 0;
};

struct Diagnostic {
    Location where;
    std::string message;  // what is wrong and what to do
    std::string detail;   // more lines, e.g. an expression with a caret under the column
};

// "FILE:LINE:COLUMN: MESSAGE" and the detail lines, indented.
std::string format_diagnostic(std::string_view file, const Diagnostic& diagnostic);

enum class RestartPolicy { on_failure, always, never };
std::string_view restart_policy_name(RestartPolicy policy);

struct Restart {
    RestartPolicy policy = RestartPolicy::on_failure;
    int64_t delay_ns = k_default_restart_delay_ns;          // first back-off
    int64_t max_delay_ns = k_default_restart_max_delay_ns;  // doubling stops here
};

using Environment = std::vector<std::pair<std::string, std::string>>;

// One edge into a stage: the upstream stage and, when given, the condition a message must
// meet to take this edge (lib/expr syntax).
struct Input {
    std::string stage;
    std::string when;
    Location where;
    Location when_where;
};

struct Stage {
    std::string name;
    Location where;
    std::vector<std::string> argv;  // `run`, split like a shell would (no shell runs it)
    Location run_where;
    std::vector<Input> inputs;  // empty: a source
    uint32_t replicas = 1;
    Environment env;  // the defaults' env, then the stage's
    Restart restart;
    std::string host;  // resolved: the stage's, the defaults', the only host, or "" (local)
    Location host_where;
    std::string stdout_path;   // where the stage's stdout goes ("" = /dev/null)
    bool destination = false;  // declared, or known from the tool (mh-store, mh-notify)
    std::string description;
};

struct Host {
    std::string name;
    std::string address;
    Location where;
};

struct Defaults {
    std::string runtime_dir;  // "" = $XDG_RUNTIME_DIR/mh-route/NAME or /tmp/mh-route-UID/NAME
    std::string bin_dir;      // where units find the tools ("" = as found in PATH now)
    std::string user;         // units: User=; "" = DynamicUser
    std::string keys_dir;     // units: where each host keeps its CURVE keys ("" = /etc/mh/NAME)
    int64_t drain_timeout_ns = k_default_drain_timeout_ns;
    int64_t drain_quiet_ns = k_default_drain_quiet_ns;
    uint32_t base_port = k_default_base_port;  // first tcp port of inputs that cross hosts
};

struct Manifest {
    std::string name;
    std::string description;
    std::vector<Host> hosts;
    Defaults defaults;
    std::vector<Stage> stages;  // in the order of the file

    const Stage* find_stage(std::string_view name) const;
    const Host* find_host(std::string_view name) const;
    // Stage indexes such that every stage comes after all of its inputs (the manifest
    // has been checked for cycles when it loaded without errors).
    std::vector<size_t> topological_order() const;
    // Indexes of the stages that read from `stage`, in file order.
    std::vector<size_t> readers(std::string_view stage) const;
    bool has_conditions() const;
};

struct LoadResult {
    Manifest manifest;
    std::vector<Diagnostic> errors;  // sorted by place in the file
    bool ok() const { return errors.empty(); }
};

// Parses and checks the manifest text. `name_hint` names the channel when [channel] has
// no name (the file's stem).
LoadResult load(std::string_view text, std::string_view name_hint);

// Splits a `run` string the way sh would split words: blanks separate, '...' is literal,
// "..." allows \" \\ \$ \`, a backslash outside quotes escapes the next character. No
// expansion, and shell operators (| ; & < > $( `) are refused: a stage is one program.
struct SplitError {
    size_t offset;
    std::string message;
};
std::optional<std::vector<std::string>> split_command(std::string_view text, SplitError* error = nullptr);

// Quotes words for sh (and split_command): bare when safe, else in double quotes.
std::string quote_word(std::string_view word);
std::string join_command(const std::vector<std::string>& argv);

size_t edit_distance(std::string_view a, std::string_view b);

// Whether a stage is allowed to have no reader: known destinations (mh-store, mh-notify),
// `destination = true`, a `stdout` file, or an --out of its own in `run`.
bool is_destination(const Stage& stage);

// Programs that a stage's `run` names, looked up in `search_dirs` (PATH and the directory
// of mh-route itself); a path with a slash is taken relative to `manifest_dir`. One error
// per program that is not there.
std::vector<Diagnostic> check_programs(const Manifest& manifest, const std::vector<std::string>& search_dirs,
                                       const std::string& manifest_dir);
std::optional<std::string> find_program(std::string_view name, const std::vector<std::string>& search_dirs,
                                        const std::string& manifest_dir);

}  // namespace mh::manifest
