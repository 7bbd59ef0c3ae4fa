// Loading a channel's test file: toml++ parses, then each table is walked with the keys it
// may hold; messages (TOML tables or JSON text) become frames through lib/json's mapping.
#include "manifest/test_file.h"
#include "manifest/toml_source.h"

#include "expr/expr.h"
#include "json/json_codec.h"
#include "message/time.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

namespace mh::manifest {
namespace {

void copy_frame(const std::vector<std::byte>& bytes, std::vector<uint64_t>& words) {
    words.resize(bytes.size() / sizeof(uint64_t));
    if (!bytes.empty()) std::memcpy(words.data(), bytes.data(), words.size() * sizeof(uint64_t));
}

// "2026-01-01T00:00:00.5+01:00" from a TOML date-time; a local one is taken as UTC.
std::string rfc3339_of(const toml::date_time& value) {
    std::string text = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}", value.date.year, value.date.month,
                                   value.date.day, value.time.hour, value.time.minute, value.time.second,
                                   value.time.nanosecond);
    int offset = value.offset ? value.offset->minutes : 0;
    if (offset == 0) return text + "Z";
    return text + fmt::format("{}{:02}:{:02}", offset < 0 ? '-' : '+', std::abs(offset) / 60, std::abs(offset) % 60);
}

// A TOML value as JSON text, for lib/json to map as it maps any JSON message. Nested
// tables become nested objects (dotted field names), arrays stay arrays (json fields).
std::optional<std::string> to_json(const toml::node& node, std::string& out, size_t depth) {
    if (depth > k_max_json_depth) return std::string("nested too deep");
    if (auto* table = node.as_table()) {
        // toml++ keeps keys sorted; the order they were written in is the message's.
        std::vector<std::pair<const toml::key*, const toml::node*>> entries;
        for (auto&& [key, value] : *table) entries.emplace_back(&key, &value);
        std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
            const auto& x = a.first->source().begin;
            const auto& y = b.first->source().begin;
            return std::tie(x.line, x.column) < std::tie(y.line, y.column);
        });
        out.push_back('{');
        bool first = true;
        for (const auto& [key, value] : entries) {
            if (!first) out.push_back(',');
            first = false;
            json::append_string(out, key->str());
            out.push_back(':');
            if (auto problem = to_json(*value, out, depth + 1)) return problem;
        }
        out.push_back('}');
    } else if (auto* array = node.as_array()) {
        out.push_back('[');
        for (size_t i = 0; i < array->size(); ++i) {
            if (i) out.push_back(',');
            if (auto problem = to_json(*array->get(i), out, depth + 1)) return problem;
        }
        out.push_back(']');
    } else if (auto* text = node.as_string()) {
        json::append_string(out, text->get());
    } else if (auto* integer = node.as_integer()) {
        out += std::to_string(integer->get());
    } else if (auto* number = node.as_floating_point()) {
        if (!std::isfinite(number->get())) return std::string("nan and inf have no JSON form");
        json::append_float(out, number->get());
    } else if (auto* boolean = node.as_boolean()) {
        out += boolean->get() ? "true" : "false";
    } else if (auto* date_time = node.as_date_time()) {
        json::append_string(out, rfc3339_of(date_time->get()));
    } else {
        return std::string("a date or a time of day alone is not a time: write a date-time such as "
                           "2026-01-01T00:00:00Z");
    }
    return std::nullopt;
}

class TestLoader : TomlChecks {
public:
    TestLoader(TestLoadResult& result, const Manifest& manifest) : TomlChecks(result.errors), m_result(result), m_manifest(manifest) {
        for (const auto& stage : manifest.stages) m_stage_names.push_back(stage.name);
    }

    void load(const toml::table& root) {
        static const std::vector<std::string> allowed = {"test", "now", "skip", "timeout"};
        // File-wide settings first: every test starts from them.
        for (auto&& [key, node] : root) {
            std::string_view name = key.str();
            if (name == "now") {
                m_now_ns = time_value(key, node, "the test file");
            } else if (name == "skip") {
                m_skip = stage_list(key, node);
            } else if (name == "timeout") {
                if (auto ns = duration_value(key, node, "the test file")) m_timeout_ns = *ns;
            } else if (name != "test") {
                error(location_of(key.source()),
                      fmt::format("unknown key '{}'{}: a test file has {} at its top, and [[test]] tables", name,
                                  suggestion(name, allowed), list(allowed)));
            }
        }
        if (auto* tests = root.get("test")) {
            auto* array = tests->as_array();
            if (!array || !array->is_array_of_tables()) {
                error(location_of(*tests), "'test' must be an array of tables: write each test as [[test]]");
            } else {
                for (size_t i = 0; i < array->size(); ++i) {
                    if (m_result.tests.size() >= k_max_tests) {
                        error(location_of(*array->get(i)), fmt::format("more than {} tests: split the file", k_max_tests));
                        break;
                    }
                    load_test(*array->get(i)->as_table());
                }
            }
        }
        if (m_result.tests.empty() && m_result.errors.empty())
            error({}, "the file has no tests: add a [[test]] table with a name, [[test.input]] and [[test.expect]]");
        std::stable_sort(m_result.errors.begin(), m_result.errors.end(), [](const Diagnostic& a, const Diagnostic& b) {
            return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
        });
    }

private:
    std::optional<bool> bool_value(const toml::key& key, const toml::node& node, std::string_view table) {
        if (auto* value = node.as_boolean()) return value->get();
        error(location_of(node), fmt::format("'{}' in {} must be true or false, not {}", key.str(), table, type_name(node)));
        return std::nullopt;
    }

    std::optional<int64_t> time_value(const toml::key& key, const toml::node& node, std::string_view table) {
        if (auto* date_time = node.as_date_time()) {
            if (auto ns = parse_rfc3339(rfc3339_of(date_time->get()))) return ns;
        } else if (auto* text = node.as_string()) {
            if (auto ns = parse_rfc3339(text->get())) return ns;
        } else if (auto* integer = node.as_integer()) {
            return integer->get();
        }
        error(location_of(node), fmt::format("'{}' in {} must be a time: RFC 3339 such as \"2026-01-01T00:00:00Z\", "
                                             "a TOML date-time, or integer nanoseconds",
                                             key.str(), table));
        return std::nullopt;
    }

    std::optional<int64_t> duration_value(const toml::key& key, const toml::node& node, std::string_view table) {
        std::optional<int64_t> ns;
        if (auto* integer = node.as_integer()) {
            if (integer->get() > 0 && integer->get() < (int64_t{1} << 32)) ns = integer->get() * k_ns_per_second;
        } else if (auto* text = node.as_string()) {
            ns = parse_duration_ns(text->get());
        }
        if (ns && *ns > 0) return ns;
        error(location_of(node),
              fmt::format("'{}' in {} must be a duration more than 0, such as \"500ms\" or \"10s\"", key.str(), table));
        return std::nullopt;
    }

    bool known_stage(const std::string& name, Location where, std::string_view role) {
        if (m_manifest.find_stage(name)) return true;
        error(where, fmt::format("{} '{}' is not a stage of the channel{}; its stages are: {}", role, name,
                                 suggestion(name, m_stage_names), list(m_stage_names)));
        return false;
    }

    std::vector<std::string> stage_list(const toml::key& key, const toml::node& node) {
        std::vector<std::string> names;
        auto* array = node.as_array();
        if (!array) {
            error(location_of(node), fmt::format("'{}' must be an array of stage names, e.g. [\"notify\"]", key.str()));
            return names;
        }
        for (auto&& element : *array) {
            auto* text = element.as_string();
            if (!text) {
                error(location_of(element), fmt::format("'{}' must hold stage names, not {}", key.str(), type_name(element)));
                continue;
            }
            if (known_stage(text->get(), location_of(element), "skip names")) names.push_back(text->get());
        }
        return names;
    }

    // A list of messages: each a TOML table, or a string holding one JSON object.
    std::vector<TestMessage> message_list(const toml::key& key, const toml::node& node, std::string_view table) {
        std::vector<TestMessage> messages;
        auto* array = node.as_array();
        if (!array) {
            error(location_of(node), fmt::format("'{}' in {} must be an array of messages: tables such as {{ source = "
                                                 "\"truck-1\", temperature = 5.0 }}, or JSON objects in strings",
                                                 key.str(), table));
            return messages;
        }
        if (array->size() > k_max_test_messages) {
            error(location_of(node), fmt::format("more than {} messages in '{}': use a file", k_max_test_messages, key.str()));
            return messages;
        }
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::node& element = *array->get(i);
            TestMessage message;
            message.where = location_of(element);
            if (element.is_table()) {
                if (auto problem = to_json(element, message.json, 0)) {
                    error(message.where, fmt::format("message {} of '{}': {}", i + 1, key.str(), *problem));
                    continue;
                }
            } else if (auto* text = element.as_string()) {
                message.json = text->get();
            } else {
                error(message.where, fmt::format("message {} of '{}' must be a table or a JSON object in a string, not {}",
                                                 i + 1, key.str(), type_name(element)));
                continue;
            }
            std::vector<std::byte> bytes;
            if (auto problem = m_decoder.decode(message.json, bytes)) {
                error(message.where, fmt::format("message {} of '{}' is not an mh message: {}", i + 1, key.str(), *problem));
                continue;
            }
            copy_frame(bytes, message.words);
            messages.push_back(std::move(message));
        }
        return messages;
    }

    void load_test(const toml::table& table) {
        static const std::vector<std::string> allowed = {"name", "now", "skip", "timeout", "input", "expect"};
        ChannelTest test;
        test.where = location_of(table.source());
        test.now_ns = m_now_ns;
        test.skip = m_skip;
        test.timeout_ns = m_timeout_ns;
        std::string where = fmt::format("test {}", m_result.tests.size() + 1);
        for (auto&& [key, node] : table) {
            std::string_view name = key.str();
            if (name == "name") {
                if (auto text = string_value(key, node, where)) {
                    test.name = *text;
                    test.where = location_of(node);
                }
            } else if (name == "now") {
                test.now_ns = time_value(key, node, where);
            } else if (name == "skip") {
                for (auto& stage : stage_list(key, node))
                    if (std::find(test.skip.begin(), test.skip.end(), stage) == test.skip.end()) test.skip.push_back(stage);
            } else if (name == "timeout") {
                if (auto ns = duration_value(key, node, where)) test.timeout_ns = *ns;
            } else if (name == "input" || name == "expect") {
                auto* array = node.as_array();
                if (!array || !array->is_array_of_tables()) {
                    error(location_of(node), fmt::format("'{}' in {} must be written as [[test.{}]] tables", name, where, name));
                    continue;
                }
                for (auto&& element : *array) {
                    if (name == "input")
                        load_input(*element.as_table(), test);
                    else
                        load_expect(*element.as_table(), test);
                }
            } else {
                unknown_key(key, where, allowed);
            }
        }
        if (test.name.empty()) {
            error(test.where, fmt::format("{} has no name: give it name = \"what it shows\"", where));
            test.name = where;
        } else if (!m_names.insert(test.name).second) {
            error(test.where, fmt::format("a second test named '{}': names tell tests apart in reports", test.name));
        }
        if (test.expectations.empty())
            error(test.where, fmt::format("test '{}' expects nothing: add a [[test.expect]] table", test.name));
        m_result.tests.push_back(std::move(test));
    }

    void load_input(const toml::table& table, ChannelTest& test) {
        static const std::vector<std::string> allowed = {"stage", "messages", "file"};
        TestInput input;
        input.where = location_of(table.source());
        bool has_messages = false;
        for (auto&& [key, node] : table) {
            if (key.str() == "stage") {
                if (auto text = string_value(key, node, "[[test.input]]")) {
                    input.stage = *text;
                    input.where = location_of(node);
                }
            } else if (key.str() == "messages") {
                input.messages = message_list(key, node, "[[test.input]]");
                has_messages = true;
            } else if (key.str() == "file") {
                if (auto text = string_value(key, node, "[[test.input]]")) {
                    input.file = *text;
                    input.file_where = location_of(node);
                }
            } else {
                unknown_key(key, "[[test.input]]", allowed);
            }
        }
        if (input.stage.empty()) {
            error(input.where, "[[test.input]] needs stage = \"NAME\": the stage these messages come out of");
            return;
        }
        if (!known_stage(input.stage, input.where, "input for")) return;
        if (has_messages == !input.file.empty())
            error(input.where, fmt::format("input for {} needs either messages = [...] or file = \"FILE.jsonl\" (one "
                                           "of them)",
                                           input.stage));
        for (const auto& other : test.inputs)
            if (other.stage == input.stage)
                error(input.where, fmt::format("a second input for {} in this test: put its messages in one list",
                                               input.stage));
        test.inputs.push_back(std::move(input));
    }

    void load_expect(const toml::table& table, ChannelTest& test) {
        static const std::vector<std::string> allowed = {"stage", "at", "where", "messages", "contains", "absent",
                                                         "count", "ordered", "exact", "tolerance"};
        Expectation expect;
        expect.where = location_of(table.source());
        std::optional<At> at;
        Location at_where;
        bool has_contains = false, has_absent = false;
        for (auto&& [key, node] : table) {
            std::string_view name = key.str();
            if (name == "stage") {
                if (auto text = string_value(key, node, "[[test.expect]]")) {
                    expect.stage = *text;
                    expect.where = location_of(node);
                }
            } else if (name == "at") {
                auto* text = node.as_string();
                if (text && (text->get() == "out" || text->get() == "in")) {
                    at = text->get() == "out" ? At::out : At::in;
                    at_where = location_of(node);
                } else {
                    error(location_of(node), "'at' must be \"out\" (what the stage writes) or \"in\" (what arrives at it)");
                }
            } else if (name == "where") {
                if (auto text = string_value(key, node, "[[test.expect]]")) {
                    expect.where_expr = *text;
                    expect.where_expr_where = location_of(node);
                    check_expression(expect.where_expr, expect.where_expr_where);
                }
            } else if (name == "messages") {
                expect.messages = message_list(key, node, "[[test.expect]]");
                expect.has_messages = true;
            } else if (name == "contains") {
                expect.contains = message_list(key, node, "[[test.expect]]");
                has_contains = true;
            } else if (name == "absent") {
                expect.absent = message_list(key, node, "[[test.expect]]");
                has_absent = true;
            } else if (name == "count") {
                auto* integer = node.as_integer();
                if (integer && integer->get() >= 0)
                    expect.count = static_cast<uint64_t>(integer->get());
                else
                    error(location_of(node), "'count' must be an integer, 0 or more");
            } else if (name == "ordered" || name == "exact") {
                if (auto value = bool_value(key, node, "[[test.expect]]")) (name == "ordered" ? expect.ordered : expect.exact) = *value;
            } else if (name == "tolerance") {
                auto* number = node.as_floating_point();
                auto* integer = node.as_integer();
                double value = number ? number->get() : integer ? static_cast<double>(integer->get()) : -1;
                if (value >= 0 && std::isfinite(value))
                    expect.tolerance = value;
                else
                    error(location_of(node), "'tolerance' must be a number, 0 or more (relative: 0.01 is 1%)");
            } else {
                unknown_key(key, "[[test.expect]]", allowed);
            }
        }
        if (expect.stage.empty()) {
            error(expect.where, "[[test.expect]] needs stage = \"NAME\": the stage whose messages are checked");
            return;
        }
        if (!known_stage(expect.stage, expect.where, "expect on")) return;
        // By default a destination is looked at where messages arrive, any other stage at what it writes.
        expect.at = at ? *at : (m_manifest.readers(expect.stage).empty() ? At::in : At::out);
        if (expect.at == At::in && m_manifest.find_stage(expect.stage)->inputs.empty())
            error(at ? at_where : expect.where,
                  fmt::format("stage {} is a source: nothing arrives at it (use at = \"out\")", expect.stage));
        if (!expect.has_messages && !has_contains && !has_absent && !expect.count)
            error(expect.where, fmt::format("the expectation on {} checks nothing: give messages, contains, absent or "
                                            "count",
                                            expect.stage));
        test.expectations.push_back(std::move(expect));
    }

    void check_expression(const std::string& text, Location where) {
        expr::Symbols symbols;
        auto compiled = expr::Expression::compile(text, symbols);
        if (auto* problem = std::get_if<expr::CompileError>(&compiled)) {
            size_t column = std::min(problem->column, text.size());
            Location at = where;
            at.column += static_cast<uint32_t>(column + 1);
            error(at, fmt::format("bad where condition: {}", problem->message),
                  fmt::format("{}\n{}^", text, std::string(column, ' ')));
        }
    }

    TestLoadResult& m_result;
    const Manifest& m_manifest;
    std::vector<std::string> m_stage_names;
    std::set<std::string> m_names;
    std::optional<int64_t> m_now_ns;
    std::vector<std::string> m_skip;
    int64_t m_timeout_ns = k_default_stage_timeout_ns;
    JsonDecoder m_decoder;
};

}  // namespace

TestLoadResult load_tests(std::string_view text, const Manifest& manifest) {
    TestLoadResult result;
    if (auto root = parse_toml(text, result.errors)) TestLoader(result, manifest).load(*root);
    return result;
}

std::optional<std::string> decode_json_lines(std::string_view text, std::vector<TestMessage>& out) {
    JsonDecoder decoder;
    size_t line_number = 0;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
        if (out.size() >= k_max_test_messages)
            return fmt::format("line {}: more than {} messages", line_number, k_max_test_messages);
        std::vector<std::byte> bytes;
        if (auto problem = decoder.decode(line, bytes)) return fmt::format("line {}: {}", line_number, *problem);
        TestMessage message;
        message.json = std::string(line);
        message.where = {static_cast<uint32_t>(line_number), 1};
        copy_frame(bytes, message.words);
        out.push_back(std::move(message));
    }
    return std::nullopt;
}

}  // namespace mh::manifest
