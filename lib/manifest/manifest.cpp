// Loading a channel manifest: toml++ parses, then every table is walked once with the
// keys it may hold; each problem becomes a Diagnostic with its place and what to do.
#include "manifest/manifest.h"
#include "manifest/toml_source.h"

#include "expr/expr.h"
#include "message/time.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

namespace mh::manifest {

std::string format_diagnostic(std::string_view file, const Diagnostic& d) {
    std::string text = d.where.line ? fmt::format("{}:{}:{}: {}", file, d.where.line, d.where.column, d.message)
                                    : fmt::format("{}: {}", file, d.message);
    size_t start = 0;
    while (start < d.detail.size()) {
        size_t end = d.detail.find('\n', start);
        if (end == std::string::npos) end = d.detail.size();
        text += "\n    " + d.detail.substr(start, end - start);
        start = end + 1;
    }
    return text;
}

std::string_view restart_policy_name(RestartPolicy policy) {
    switch (policy) {
        case RestartPolicy::on_failure: return "on-failure";
        case RestartPolicy::always: return "always";
        case RestartPolicy::never: return "never";
    }
    return "on-failure";
}

const Stage* Manifest::find_stage(std::string_view name) const {
    for (const auto& stage : stages)
        if (stage.name == name) return &stage;
    return nullptr;
}

const Host* Manifest::find_host(std::string_view name) const {
    for (const auto& host : hosts)
        if (host.name == name) return &host;
    return nullptr;
}

std::vector<size_t> Manifest::readers(std::string_view stage) const {
    std::vector<size_t> result;
    for (size_t i = 0; i < stages.size(); ++i)
        for (const auto& input : stages[i].inputs)
            if (input.stage == stage) {
                result.push_back(i);
                break;
            }
    return result;
}

bool Manifest::has_conditions() const {
    for (const auto& stage : stages)
        for (const auto& input : stage.inputs)
            if (!input.when.empty()) return true;
    return false;
}

std::vector<size_t> Manifest::topological_order() const {
    // Kahn's algorithm, taking ready stages in file order so the order is stable.
    std::map<std::string_view, size_t> index;
    for (size_t i = 0; i < stages.size(); ++i) index[stages[i].name] = i;
    std::vector<size_t> pending(stages.size(), 0);
    for (size_t i = 0; i < stages.size(); ++i)
        for (const auto& input : stages[i].inputs)
            if (index.count(input.stage)) ++pending[i];
    std::vector<size_t> order;
    std::vector<bool> done(stages.size(), false);
    while (order.size() < stages.size()) {
        bool progressed = false;
        for (size_t i = 0; i < stages.size(); ++i) {
            if (done[i] || pending[i] != 0) continue;
            done[i] = true;
            progressed = true;
            order.push_back(i);
            for (size_t reader : readers(stages[i].name))
                for (const auto& input : stages[reader].inputs)
                    if (input.stage == stages[i].name) --pending[reader];
            break;
        }
        if (!progressed) break;  // a cycle: the rest cannot be ordered
    }
    return order;
}

// ---- splitting `run` -------------------------------------------------------------------------

std::optional<std::vector<std::string>> split_command(std::string_view text, SplitError* error) {
    auto fail = [&](size_t offset, std::string message) -> std::optional<std::vector<std::string>> {
        if (error) *error = {offset, std::move(message)};
        return std::nullopt;
    };
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;
    size_t i = 0;
    while (i < text.size()) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_word) words.push_back(std::move(word));
            word.clear();
            in_word = false;
            ++i;
        } else if (c == '\'') {
            size_t end = text.find('\'', i + 1);
            if (end == std::string_view::npos) return fail(i, "this single quote is not closed");
            word.append(text.substr(i + 1, end - i - 1));
            in_word = true;
            i = end + 1;
        } else if (c == '"') {
            size_t j = i + 1;
            for (;; ++j) {
                if (j >= text.size()) return fail(i, "this double quote is not closed");
                if (text[j] == '"') break;
                if (text[j] == '\\' && j + 1 < text.size() && std::string_view("\"\\$`").find(text[j + 1]) != std::string_view::npos)
                    ++j;
                else if (text[j] == '$' || text[j] == '`')
                    return fail(j, "no expansion happens in run: escape it as \\$ or use single quotes");
                word.push_back(text[j]);
            }
            in_word = true;
            i = j + 1;
        } else if (c == '\\') {
            if (i + 1 >= text.size()) return fail(i, "a backslash at the end escapes nothing");
            word.push_back(text[i + 1]);
            in_word = true;
            i += 2;
        } else if (std::string_view("|;&<>`$()").find(c) != std::string_view::npos) {
            return fail(i, fmt::format("'{}' is shell syntax, and no shell runs a stage: one stage is one program "
                                       "(quote it if it is an argument, or make another stage)",
                                       c));
        } else {
            word.push_back(c);
            in_word = true;
            ++i;
        }
    }
    if (in_word) words.push_back(std::move(word));
    return words;
}

std::string quote_word(std::string_view word) {
    if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                "-_./:=,+@%") == std::string_view::npos)
        return std::string(word);
    // Inside double quotes only \ " $ ` are special for sh (and for split_command).
    std::string quoted = "\"";
    for (char c : word) {
        if (c == '"' || c == '\\' || c == '$' || c == '`') quoted.push_back('\\');
        quoted.push_back(c);
    }
    quoted.push_back('"');
    return quoted;
}

std::string join_command(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& word : argv) {
        if (!text.empty()) text.push_back(' ');
        text += quote_word(word);
    }
    return text;
}

namespace {

std::string_view basename_of(std::string_view path) {
    size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

bool is_destination(const Stage& stage) {
    if (stage.destination || !stage.stdout_path.empty()) return true;
    if (stage.argv.empty()) return false;
    std::string_view program = basename_of(stage.argv[0]);
    if (program == "mh-store" || program == "mh-notify") return true;
    for (size_t i = 1; i < stage.argv.size(); ++i) {
        std::string_view arg = stage.argv[i];
        if (arg == "--out" || arg == "-o" || arg.starts_with("--out=")) return true;
    }
    return false;
}

// ---- the loader ------------------------------------------------------------------------------

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

namespace {


bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > k_max_name_chars) return false;
    for (char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    return std::isalnum(static_cast<unsigned char>(name[0]));
}

class Loader : TomlChecks {
public:
    explicit Loader(LoadResult& result) : TomlChecks(result.errors), m_result(result), m_manifest(result.manifest) {}

    void load(const toml::table& root, std::string_view name_hint) {
        m_manifest.name = std::string(name_hint);
        for (auto&& [key, node] : root) {
            std::string_view name = key.str();
            if (name == "channel") {
                if (auto* table = expect_table(key, node)) load_channel(*table);
            } else if (name == "hosts") {
                if (auto* table = expect_table(key, node)) load_hosts(*table);
            } else if (name == "defaults") {
                if (auto* table = expect_table(key, node)) load_defaults(*table);
            } else if (name == "stage") {
                if (auto* table = expect_table(key, node)) m_stage_tables = table;
            } else {
                error(location_of(key.source()),
                      fmt::format("unknown table or key '{}'{}: a manifest has [channel], [hosts], [defaults] and "
                                  "[stage.NAME] tables",
                                  name, suggestion(name, {"channel", "hosts", "defaults", "stage"})));
            }
        }
        if (!valid_name(m_manifest.name)) {
            error(m_channel_name_where,
                  fmt::format("channel name '{}' is not usable in file and unit names: use letters, digits, - and _ "
                              "(at most {} characters)",
                              m_manifest.name, k_max_name_chars));
        }
        if (m_stage_tables) load_stages(*m_stage_tables);
        if (m_manifest.stages.empty())
            error({}, "the manifest has no stages: add at least one [stage.NAME] table with a run key");
        check_graph();
        std::stable_sort(m_result.errors.begin(), m_result.errors.end(), [](const Diagnostic& a, const Diagnostic& b) {
            return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
        });
    }

private:
    const toml::table* expect_table(const toml::key& key, const toml::node& node) {
        if (auto* table = node.as_table()) return table;
        error(location_of(key.source()), fmt::format("'{}' must be a table ([{}]), not {}", key.str(), key.str(),
                                                     type_name(node)));
        return nullptr;
    }

    std::optional<int64_t> duration_value(const toml::key& key, const toml::node& node, std::string_view table) {
        if (auto* integer = node.as_integer()) {
            // A bare number is seconds, as in parse_duration_ns.
            if (integer->get() >= 0 && integer->get() < (int64_t{1} << 32)) return integer->get() * k_ns_per_second;
        } else if (auto* text = node.as_string()) {
            auto ns = parse_duration_ns(text->get());
            if (ns && *ns >= 0) return *ns;
        }
        error(location_of(node), fmt::format("'{}' in {} must be a duration such as \"500ms\", \"5s\" or \"2m\"",
                                             key.str(), table));
        return std::nullopt;
    }

    std::optional<RestartPolicy> policy_value(const toml::key& key, const toml::node& node, std::string_view table) {
        if (auto* text = node.as_string()) {
            if (text->get() == "on-failure") return RestartPolicy::on_failure;
            if (text->get() == "always") return RestartPolicy::always;
            if (text->get() == "never") return RestartPolicy::never;
        }
        error(location_of(node),
              fmt::format("'{}' in {} must be \"on-failure\", \"always\" or \"never\"", key.str(), table));
        return std::nullopt;
    }

    void env_value(const toml::key& key, const toml::node& node, std::string_view table, Environment& env) {
        auto* entries = node.as_table();
        if (!entries) {
            error(location_of(node), fmt::format("'{}' in {} must be a table of strings, e.g. env = {{ TZ = \"UTC\" }}",
                                                 key.str(), table));
            return;
        }
        for (auto&& [name, value] : *entries) {
            std::string variable(name.str());
            bool valid = !variable.empty() && !std::isdigit(static_cast<unsigned char>(variable[0]));
            for (char c : variable)
                if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') valid = false;
            if (!valid) {
                error(location_of(name.source()),
                      fmt::format("'{}' is not an environment variable name: use letters, digits and _", variable));
                continue;
            }
            std::string text;
            if (auto* s = value.as_string())
                text = s->get();
            else if (auto* i = value.as_integer())
                text = std::to_string(i->get());
            else if (auto* b = value.as_boolean())
                text = b->get() ? "true" : "false";
            else {
                error(location_of(value),
                      fmt::format("env {} must be a string, an integer or a boolean, not {}", variable, type_name(value)));
                continue;
            }
            auto existing = std::find_if(env.begin(), env.end(), [&](const auto& e) { return e.first == variable; });
            if (existing != env.end())
                existing->second = text;
            else
                env.emplace_back(variable, text);
        }
    }

    void load_channel(const toml::table& table) {
        for (auto&& [key, node] : table) {
            if (key.str() == "name") {
                if (auto text = string_value(key, node, "[channel]")) {
                    m_manifest.name = *text;
                    m_channel_name_where = location_of(node);
                }
            } else if (key.str() == "description") {
                if (auto text = string_value(key, node, "[channel]")) m_manifest.description = *text;
            } else {
                unknown_key(key, "[channel]", {"name", "description"});
            }
        }
    }

    void load_hosts(const toml::table& table) {
        for (auto&& [key, node] : table) {
            Host host{std::string(key.str()), {}, location_of(key.source())};
            if (!valid_name(host.name))
                error(host.where, fmt::format("host name '{}' is not usable: use letters, digits, - and _", host.name));
            if (auto* text = node.as_string()) {
                host.address = text->get();
            } else if (auto* fields = node.as_table()) {
                for (auto&& [field, value] : *fields) {
                    if (field.str() == "address") {
                        if (auto text = string_value(field, value, "a host")) host.address = *text;
                    } else {
                        unknown_key(field, fmt::format("host {}", host.name), {"address"});
                    }
                }
            } else {
                error(location_of(node),
                      fmt::format("host {} must be an address (\"10.0.0.5\") or {{ address = \"...\" }}", host.name));
                continue;
            }
            if (host.address.empty() || host.address.find_first_of(" \t/") != std::string::npos)
                error(location_of(node),
                      fmt::format("host {} needs an address that other hosts reach it on, e.g. \"10.0.0.5\" or "
                                  "\"edge-1.example.net\"",
                                  host.name));
            m_manifest.hosts.push_back(std::move(host));
        }
        std::stable_sort(m_manifest.hosts.begin(), m_manifest.hosts.end(), [](const Host& a, const Host& b) {
            return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
        });
    }

    void load_defaults(const toml::table& table) {
        static const std::vector<std::string> allowed = {
            "runtime_dir", "bin_dir", "user", "host", "restart", "restart_delay", "restart_max_delay",
            "drain_timeout", "drain_quiet", "base_port", "env", "keys_dir"};
        auto& d = m_manifest.defaults;
        for (auto&& [key, node] : table) {
            std::string_view name = key.str();
            if (name == "runtime_dir" || name == "bin_dir" || name == "keys_dir") {
                if (auto text = string_value(key, node, "[defaults]")) {
                    if (!text->starts_with('/'))
                        error(location_of(node), fmt::format("{} must be an absolute path", name));
                    (name == "runtime_dir" ? d.runtime_dir : name == "bin_dir" ? d.bin_dir : d.keys_dir) = *text;
                }
            } else if (name == "user") {
                if (auto text = string_value(key, node, "[defaults]")) d.user = *text;
            } else if (name == "host") {
                if (auto text = string_value(key, node, "[defaults]")) {
                    m_default_host = *text;
                    m_default_host_where = location_of(node);
                }
            } else if (name == "restart") {
                if (auto policy = policy_value(key, node, "[defaults]")) m_default_restart.policy = *policy;
            } else if (name == "restart_delay") {
                if (auto ns = duration_value(key, node, "[defaults]")) m_default_restart.delay_ns = *ns;
            } else if (name == "restart_max_delay") {
                if (auto ns = duration_value(key, node, "[defaults]")) m_default_restart.max_delay_ns = *ns;
            } else if (name == "drain_timeout") {
                if (auto ns = duration_value(key, node, "[defaults]")) d.drain_timeout_ns = *ns;
            } else if (name == "drain_quiet") {
                if (auto ns = duration_value(key, node, "[defaults]")) d.drain_quiet_ns = *ns;
            } else if (name == "base_port") {
                auto* port = node.as_integer();
                if (port && port->get() >= 1 && port->get() <= 65535 - static_cast<int64_t>(k_max_stages * k_max_replicas))
                    d.base_port = static_cast<uint32_t>(port->get());
                else
                    error(location_of(node), fmt::format("base_port must be an integer from 1 to {}",
                                                         65535 - k_max_stages * k_max_replicas));
            } else if (name == "env") {
                env_value(key, node, "[defaults]", m_default_env);
            } else {
                unknown_key(key, "[defaults]", allowed);
            }
        }
        check_restart(m_default_restart, location_of(table.source()));
    }

    void check_restart(Restart& restart, Location where) {
        if (restart.delay_ns <= 0) {
            error(where, "restart_delay must be more than 0: a crashing stage would spin");
            restart.delay_ns = k_default_restart_delay_ns;
        }
        if (restart.max_delay_ns < restart.delay_ns) {
            error(where, "restart_max_delay must be at least restart_delay");
            restart.max_delay_ns = restart.delay_ns;
        }
    }

    void load_stages(const toml::table& stages) {
        for (auto&& [key, node] : stages) {
            if (m_manifest.stages.size() >= k_max_stages) {
                error(location_of(key.source()), fmt::format("more than {} stages: split the channel", k_max_stages));
                break;
            }
            Stage stage;
            stage.name = std::string(key.str());
            stage.where = location_of(key.source());
            if (!valid_name(stage.name))
                error(stage.where, fmt::format("stage name '{}' is not usable in socket and unit names: use letters, "
                                               "digits, - and _ (at most {} characters)",
                                               stage.name, k_max_name_chars));
            auto* table = node.as_table();
            if (!table) {
                error(stage.where, fmt::format("stage.{} must be a table ([stage.{}] with a run key), not {}", stage.name,
                                               stage.name, type_name(node)));
                continue;
            }
            load_stage(*table, stage);
            m_manifest.stages.push_back(std::move(stage));
        }
        // toml++ keeps a table's keys sorted; the file's order is the one people expect.
        std::stable_sort(m_manifest.stages.begin(), m_manifest.stages.end(), [](const Stage& a, const Stage& b) {
            return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
        });
    }

    void load_stage(const toml::table& table, Stage& stage) {
        static const std::vector<std::string> allowed = {
            "run", "from", "when", "replicas", "env", "restart", "restart_delay", "restart_max_delay",
            "host", "stdout", "destination", "description"};
        std::string where = fmt::format("[stage.{}]", stage.name);
        stage.env = m_default_env;
        stage.restart = m_default_restart;
        std::string when;
        Location when_where;
        bool has_run = false;
        for (auto&& [key, node] : table) {
            std::string_view name = key.str();
            if (name == "run") {
                has_run = true;
                load_run(node, stage);
            } else if (name == "from") {
                load_from(node, stage);
            } else if (name == "when") {
                if (auto text = string_value(key, node, where)) {
                    when = *text;
                    when_where = location_of(node);
                }
            } else if (name == "replicas") {
                auto* count = node.as_integer();
                if (count && count->get() >= 1 && count->get() <= k_max_replicas)
                    stage.replicas = static_cast<uint32_t>(count->get());
                else
                    error(location_of(node), fmt::format("replicas must be an integer from 1 to {}", k_max_replicas));
            } else if (name == "env") {
                env_value(key, node, where, stage.env);
            } else if (name == "restart") {
                if (auto policy = policy_value(key, node, where)) stage.restart.policy = *policy;
            } else if (name == "restart_delay") {
                if (auto ns = duration_value(key, node, where)) stage.restart.delay_ns = *ns;
            } else if (name == "restart_max_delay") {
                if (auto ns = duration_value(key, node, where)) stage.restart.max_delay_ns = *ns;
            } else if (name == "host") {
                if (auto text = string_value(key, node, where)) {
                    stage.host = *text;
                    stage.host_where = location_of(node);
                }
            } else if (name == "stdout") {
                if (auto text = string_value(key, node, where)) {
                    if (text->empty())
                        error(location_of(node), "stdout must name a file");
                    stage.stdout_path = *text;
                }
            } else if (name == "destination") {
                if (auto* flag = node.as_boolean())
                    stage.destination = flag->get();
                else
                    error(location_of(node), "destination must be true or false");
            } else if (name == "description") {
                if (auto text = string_value(key, node, where)) stage.description = *text;
            } else {
                unknown_key(key, where, allowed);
            }
        }
        check_restart(stage.restart, stage.where);
        if (!has_run)
            error(stage.where, fmt::format("stage {} has no run key: say which program it runs, e.g. run = "
                                           "\"mh-filter 'temperature > 30'\"",
                                           stage.name));
        if (!when.empty()) {
            if (stage.inputs.empty()) {
                error(when_where, fmt::format("stage {} has a when condition but no from: a source has no input "
                                              "edge to put a condition on",
                                              stage.name));
            }
            for (auto& input : stage.inputs) {
                if (!input.when.empty()) {
                    error(input.when_where,
                          fmt::format("stage {} has when both for the stage and in its from entry for {}: give it in "
                                      "one place (the stage's when applies to every input)",
                                      stage.name, input.stage));
                    continue;
                }
                input.when = when;
                input.when_where = when_where;
            }
        }
        for (const auto& input : stage.inputs) check_condition(input);
        resolve_host(stage);
    }

    void load_run(const toml::node& node, Stage& stage) {
        if (auto* text = node.as_string()) {
            SplitError split_error;
            auto words = split_command(text->get(), &split_error);
            if (!words) {
                const std::string& run = text->get();
                Location where = location_of(node);
                // The line and column of the offending character in the file: a string with a
                // newline is a multi-line one ("""/'''), whose text starts after three quotes.
                size_t line_start = run.rfind('\n', split_error.offset == 0 ? 0 : split_error.offset - 1);
                line_start = line_start == std::string::npos || line_start >= split_error.offset ? 0 : line_start + 1;
                const size_t quotes = run.find('\n') == std::string::npos ? 1 : 3;
                const size_t column = split_error.offset - line_start;
                where.line += static_cast<uint32_t>(std::count(run.begin(), run.begin() + line_start, '\n'));
                where.column = static_cast<uint32_t>(line_start == 0 ? where.column + quotes + column : column + 1);
                size_t line_end = run.find('\n', line_start);
                error(where, fmt::format("run of stage {}: {}", stage.name, split_error.message),
                      fmt::format("{}\n{}^", run.substr(line_start, line_end == std::string::npos ? line_end : line_end - line_start),
                                  std::string(column, ' ')));
                return;
            }
            stage.argv = std::move(*words);
        } else if (auto* array = node.as_array()) {
            for (const auto& element : *array) {
                if (auto* word = element.as_string())
                    stage.argv.push_back(word->get());
                else {
                    error(location_of(element), fmt::format("run of stage {}: every word of the array must be a "
                                                            "string, not {}",
                                                            stage.name, type_name(element)));
                    stage.argv.clear();
                    return;
                }
            }
        } else {
            error(location_of(node), fmt::format("run of stage {} must be a command line string or an array of "
                                                 "words, not {}",
                                                 stage.name, type_name(node)));
            return;
        }
        stage.run_where = location_of(node);
        if (stage.argv.empty() || stage.argv[0].empty())
            error(location_of(node), fmt::format("run of stage {} is empty: name the program it runs", stage.name));
    }

    void load_from(const toml::node& node, Stage& stage) {
        auto add = [&](const toml::node& entry) {
            Input input;
            input.where = location_of(entry);
            if (auto* name = entry.as_string()) {
                input.stage = name->get();
            } else if (auto* fields = entry.as_table()) {
                for (auto&& [key, value] : *fields) {
                    if (key.str() == "stage") {
                        if (auto text = string_value(key, value, "a from entry")) {
                            input.stage = *text;
                            input.where = location_of(value);
                        }
                    } else if (key.str() == "when") {
                        if (auto text = string_value(key, value, "a from entry")) {
                            input.when = *text;
                            input.when_where = location_of(value);
                        }
                    } else {
                        unknown_key(key, "a from entry", {"stage", "when"});
                    }
                }
                if (input.stage.empty()) {
                    error(location_of(entry), "a from entry needs stage = \"NAME\"");
                    return;
                }
            } else {
                error(location_of(entry),
                      fmt::format("a from entry must be a stage name or {{ stage = \"NAME\", when = \"EXPR\" }}, not {}",
                                  type_name(entry)));
                return;
            }
            for (const auto& existing : stage.inputs)
                if (existing.stage == input.stage) {
                    error(input.where, fmt::format("stage {} reads from {} twice: list it once", stage.name, input.stage));
                    return;
                }
            stage.inputs.push_back(std::move(input));
        };
        if (auto* array = node.as_array()) {
            if (array->empty())
                error(location_of(node), fmt::format("from of stage {} is empty: leave it out for a source", stage.name));
            for (const auto& entry : *array) add(entry);
        } else if (node.is_string() || node.is_table()) {
            add(node);
        } else {
            error(location_of(node), fmt::format("from of stage {} must be a list of stage names, not {}", stage.name,
                                                 type_name(node)));
        }
    }

    void check_condition(const Input& input) {
        if (input.when.empty()) return;
        expr::Symbols symbols;
        auto compiled = expr::Expression::compile(input.when, symbols);
        if (auto* problem = std::get_if<expr::CompileError>(&compiled)) {
            Location where = input.when_where;
            where.column += static_cast<uint32_t>(std::min<size_t>(problem->column, input.when.size()) + 1);
            error(where, fmt::format("bad when condition on the edge from {}: {}", input.stage, problem->message),
                  fmt::format("{}\n{}^", input.when, std::string(std::min(problem->column, input.when.size()), ' ')));
        }
    }

    void resolve_host(Stage& stage) {
        if (stage.host.empty() && !m_default_host.empty()) {
            stage.host = m_default_host;
            stage.host_where = m_default_host_where;
        }
        if (stage.host.empty()) {
            if (m_manifest.hosts.size() == 1) stage.host = m_manifest.hosts[0].name;
            return;  // with no [hosts] every stage is local; with several, check_graph asks
        }
    }

    void check_graph() {
        std::vector<std::string> names;
        for (const auto& stage : m_manifest.stages) names.push_back(stage.name);
        std::vector<std::string> host_names;
        for (const auto& host : m_manifest.hosts) host_names.push_back(host.name);
        if (!m_default_host.empty() && !m_manifest.find_host(m_default_host))
            error(m_default_host_where, undeclared_host(m_default_host, host_names));
        for (auto& stage : m_manifest.stages) {
            for (const auto& input : stage.inputs) {
                if (!m_manifest.find_stage(input.stage))
                    error(input.where, fmt::format("stage {} reads from '{}', which is not a stage{}; the stages are: {}",
                                                   stage.name, input.stage, suggestion(input.stage, names), list(names)));
            }
            if (!stage.host.empty() && !m_manifest.find_host(stage.host) && stage.host != m_default_host)
                error(stage.host_where, undeclared_host(stage.host, host_names));
            if (stage.host.empty() && m_manifest.hosts.size() > 1)
                error(stage.where, fmt::format("stage {} has no host and [hosts] declares {}: give it host = \"NAME\" "
                                               "or set [defaults] host",
                                               stage.name, m_manifest.hosts.size()));
            if (m_manifest.readers(stage.name).empty() && !stage.argv.empty() && !is_destination(stage))
                error(stage.where,
                      fmt::format("nothing reads from stage {} and it is not a destination, so its output is lost: add "
                                  "it to another stage's from, send it to a file with stdout = \"FILE\", or mark it "
                                  "destination = true",
                                  stage.name));
        }
        check_cycles();
    }

    std::string undeclared_host(const std::string& host, const std::vector<std::string>& host_names) {
        if (host_names.empty())
            return fmt::format("host '{}' is not declared: add it to [hosts] with its address, e.g. {} = \"10.0.0.5\"",
                               host, host);
        return fmt::format("host '{}' is not declared in [hosts]{}; the hosts are: {}", host,
                           suggestion(host, host_names), list(host_names));
    }

    void check_cycles() {
        // Depth-first search; a back edge closes a cycle, reported once at the edge that closes it.
        const auto& stages = m_manifest.stages;
        std::map<std::string_view, size_t> index;
        for (size_t i = 0; i < stages.size(); ++i) index.emplace(stages[i].name, i);
        enum class Mark { none, open, done };
        std::vector<Mark> mark(stages.size(), Mark::none);
        std::vector<size_t> path;
        std::function<void(size_t)> visit = [&](size_t i) {
            mark[i] = Mark::open;
            path.push_back(i);
            for (const auto& input : stages[i].inputs) {
                auto found = index.find(input.stage);
                if (found == index.end()) continue;
                size_t j = found->second;
                if (mark[j] == Mark::open) {
                    std::string cycle = stages[j].name;
                    auto start = std::find(path.begin(), path.end(), j);
                    for (auto it = path.end(); it != start;) {
                        --it;
                        cycle += " -> " + stages[*it].name;
                    }
                    error(input.where, fmt::format("a cycle: {} (data flows along from); a channel must be acyclic: "
                                                   "remove one of these from entries",
                                                   cycle));
                } else if (mark[j] == Mark::none) {
                    visit(j);
                }
            }
            path.pop_back();
            mark[i] = Mark::done;
        };
        for (size_t i = 0; i < stages.size(); ++i)
            if (mark[i] == Mark::none) visit(i);
    }

    LoadResult& m_result;
    Manifest& m_manifest;
    const toml::table* m_stage_tables = nullptr;
    Location m_channel_name_where;
    std::string m_default_host;
    Location m_default_host_where;
    Restart m_default_restart;
    Environment m_default_env;
};

}  // namespace

LoadResult load(std::string_view text, std::string_view name_hint) {
    LoadResult result;
    if (auto root = parse_toml(text, result.errors)) Loader(result).load(*root, name_hint);
    return result;
}

}  // namespace mh::manifest
