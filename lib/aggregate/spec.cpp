#include "aggregate/spec.h"

#include "core/error.h"
#include "message/time.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <set>

namespace mh::aggregate {
namespace {

Error usage(std::string text) { return Error(ExitCode::usage, std::move(text)); }

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

bool is_name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-'; }

// A field name: an identifier with dots and dashes, or any text in backquotes.
std::optional<std::string> field_name(std::string_view text) {
    text = trim(text);
    if (text.size() >= 2 && text.front() == '`' && text.back() == '`') {
        std::string_view inner = text.substr(1, text.size() - 2);
        if (inner.empty() || inner.find('`') != std::string_view::npos) return std::nullopt;
        return std::string(inner);
    }
    if (text.empty() || !is_name_start(text.front())) return std::nullopt;
    if (!std::all_of(text.begin(), text.end(), is_name_char)) return std::nullopt;
    return std::string(text);
}

bool is_identifier(std::string_view text) {
    return !text.empty() && is_name_start(text.front()) &&
           std::all_of(text.begin(), text.end(), [](char c) {
               return is_name_start(c) || (c >= '0' && c <= '9');
           });
}

// Splits at commas outside parentheses and backquotes.
std::vector<std::string_view> split_top(std::string_view text) {
    std::vector<std::string_view> items;
    int depth = 0;
    bool quoted = false;
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '`') quoted = !quoted;
        if (quoted) continue;
        if (c == '(') ++depth;
        if (c == ')') --depth;
        if (c == ',' && depth == 0) {
            items.push_back(text.substr(start, i - start));
            start = i + 1;
        }
    }
    items.push_back(text.substr(start));
    return items;
}

struct Call {
    std::string function;
    std::vector<std::string_view> arguments;  // trimmed; empty list for "f()"
    std::string_view rest;                    // what follows ')'
};

std::optional<Call> parse_call(std::string_view text) {
    text = trim(text);
    size_t open = text.find('(');
    if (open == std::string_view::npos) return std::nullopt;
    Call call;
    call.function = std::string(trim(text.substr(0, open)));
    if (!is_identifier(call.function)) return std::nullopt;
    size_t close = std::string_view::npos;
    bool quoted = false;
    for (size_t i = open + 1; i < text.size(); ++i) {
        if (text[i] == '`') quoted = !quoted;
        if (!quoted && text[i] == ')') {
            close = i;
            break;
        }
    }
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view inside = trim(text.substr(open + 1, close - open - 1));
    if (!inside.empty())
        for (auto argument : split_top(inside)) call.arguments.push_back(trim(argument));
    call.rest = trim(text.substr(close + 1));
    return call;
}

std::optional<double> parse_number(std::string_view text) {
    text = trim(text);
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value))
        return std::nullopt;
    return value;
}

// "p99" -> 0.99, "p99.9" -> 0.999, "p50" -> 0.5; "median" -> 0.5.
std::optional<double> quantile_of(std::string_view function, std::string& label) {
    if (function == "median") {
        label = "median";
        return 0.5;
    }
    if (function.size() < 2 || function[0] != 'p') return std::nullopt;
    std::string_view digits = function.substr(1);
    // The lexer allows no dot in a function name; accept p99_9 for p99.9.
    std::string text(digits);
    std::replace(text.begin(), text.end(), '_', '.');
    if (!std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; }))
        return std::nullopt;
    auto percent = parse_number(text);
    if (!percent || *percent < 0 || *percent > 100) return std::nullopt;
    label = "p" + std::string(digits);
    std::replace(label.begin(), label.end(), '.', '_');
    return *percent / 100;
}

// Names that stay one JSON key: no dots (a dot nests on output).
std::string default_name(std::string_view function, std::string_view field) {
    if (field.empty()) return std::string(function);
    std::string name = fmt::format("{}_{}", function, field);
    std::replace(name.begin(), name.end(), '.', '_');
    return name;
}

}  // namespace

std::vector<AggSpec> parse_aggregates(std::string_view text) {
    std::vector<AggSpec> specs;
    if (trim(text).empty()) throw usage("--agg is empty: give at least one aggregate, e.g. 'count()'");
    std::set<std::string> names;
    for (std::string_view item : split_top(text)) {
        item = trim(item);
        auto bad = [&](std::string_view why) {
            return usage(fmt::format("bad aggregate '{}' in --agg: {}", item, why));
        };
        auto call = parse_call(item);
        if (!call) throw bad("expected FUNC() or FUNC(FIELD), optionally followed by 'as NAME'");
        AggSpec spec{};
        std::string label = call->function;
        if (call->arguments.size() > 1) throw bad("takes at most one field");
        if (!call->arguments.empty()) {
            auto field = field_name(call->arguments[0]);
            if (!field) throw bad(fmt::format("'{}' is not a field name", call->arguments[0]));
            spec.field = std::move(*field);
        }
        const std::string& f = call->function;
        if (f == "count") spec.kind = AggKind::count;
        else if (f == "sum") spec.kind = AggKind::sum;
        else if (f == "min") spec.kind = AggKind::min;
        else if (f == "max") spec.kind = AggKind::max;
        else if (f == "mean" || f == "avg") spec.kind = AggKind::mean;
        else if (f == "stddev") spec.kind = AggKind::stddev;
        else if (f == "first") spec.kind = AggKind::first;
        else if (f == "last") spec.kind = AggKind::last;
        else if (f == "rate") spec.kind = AggKind::rate;
        else if (f == "distinct") spec.kind = AggKind::distinct;
        else if (auto q = quantile_of(f, label)) {
            spec.kind = AggKind::quantile;
            spec.quantile = *q;
        } else
            throw bad(fmt::format(
                "unknown function '{}' (count, sum, min, max, mean, stddev, first, last, rate, "
                "distinct, median, pNN)", f));
        bool field_optional = spec.kind == AggKind::count || spec.kind == AggKind::rate;
        if (spec.field.empty() && !field_optional) throw bad(fmt::format("{}() needs a field", f));

        if (!call->rest.empty()) {
            std::string_view rest = call->rest;
            if (rest.substr(0, 3) != "as " && rest.substr(0, 3) != "as\t")
                throw bad(fmt::format("unexpected '{}' after the call (expected 'as NAME')", rest));
            auto name = field_name(rest.substr(3));
            if (!name) throw bad(fmt::format("'{}' is not a name", trim(rest.substr(3))));
            spec.name = std::move(*name);
        } else {
            spec.name = default_name(label, spec.field);
        }
        if (spec.name == k_window_start_field || spec.name == k_window_end_field ||
            spec.name == k_evicted_field)
            throw bad(fmt::format("'{}' is a name mh-aggregate writes itself; pick another with 'as'",
                                  spec.name));
        if (!names.insert(spec.name).second)
            throw bad(fmt::format("a second aggregate named '{}'; name one with 'as'", spec.name));
        specs.push_back(std::move(spec));
    }
    return specs;
}

std::vector<KeySpec> parse_keys(const std::vector<std::string>& items) {
    std::vector<KeySpec> keys;
    std::set<std::string> seen;
    if (items.size() > k_max_keys) throw usage(fmt::format("--by takes at most {} keys", k_max_keys));
    for (const auto& raw : items) {
        auto name = field_name(raw);
        if (!name) throw usage(fmt::format("bad --by key '{}': expected source, gateway, kind or a field name", raw));
        if (!seen.insert(*name).second) throw usage(fmt::format("--by names '{}' twice", *name));
        KeyKind kind = *name == "source"    ? KeyKind::source
                       : *name == "gateway" ? KeyKind::gateway
                       : *name == "kind"    ? KeyKind::kind
                                            : KeyKind::field;
        keys.push_back({kind, std::move(*name)});
    }
    return keys;
}

DetectSpec parse_detect(std::string_view text) {
    std::string_view original = trim(text);
    auto bad = [&](std::string_view why) {
        return usage(fmt::format("bad --detect rule '{}': {}", original, why));
    };
    DetectSpec spec{};
    std::string_view body = original;
    // NAME= prefix: an identifier followed by '=' before the call's '('.
    size_t equals = body.find('=');
    size_t open = body.find('(');
    if (equals != std::string_view::npos && open != std::string_view::npos && equals < open) {
        std::string_view name = trim(body.substr(0, equals));
        if (!is_identifier(name)) throw bad(fmt::format("'{}' is not a rule name", name));
        spec.name = std::string(name);
        body = trim(body.substr(equals + 1));
    }
    auto call = parse_call(body);
    if (!call) throw bad("expected zscore(FIELD) > K, stuck(FIELD, DURATION) or silence(DURATION)");
    if (spec.name.empty()) spec.name = std::string(body);
    auto duration = [&](std::string_view arg) {
        auto ns = parse_duration_ns(arg);
        if (!ns || *ns <= 0) throw bad(fmt::format("'{}' is not a duration (30s, 5m, 1h)", arg));
        return *ns;
    };
    auto field = [&](std::string_view arg) {
        auto name = field_name(arg);
        if (!name) throw bad(fmt::format("'{}' is not a field name", arg));
        return *name;
    };
    if (call->function == "zscore") {
        spec.kind = DetectKind::zscore;
        if (call->arguments.empty() || call->arguments.size() > 2)
            throw bad("zscore takes a field and an optional weight: zscore(temperature[, 0.05]) > 4");
        spec.field = field(call->arguments[0]);
        spec.alpha = k_default_zscore_alpha;
        if (call->arguments.size() == 2) {
            auto alpha = parse_number(call->arguments[1]);
            if (!alpha || *alpha <= 0 || *alpha >= 1) throw bad("the weight must be between 0 and 1");
            spec.alpha = *alpha;
        }
        std::string_view rest = call->rest;
        if (rest.empty() || rest[0] != '>') throw bad("zscore needs a threshold: zscore(FIELD) > K");
        auto k = parse_number(rest.substr(rest.size() > 1 && rest[1] == '=' ? 2 : 1));
        if (!k || *k <= 0) throw bad("the threshold K must be a positive number");
        spec.threshold = *k;
        return spec;
    }
    if (!call->rest.empty()) throw bad(fmt::format("unexpected '{}' after the call", call->rest));
    if (call->function == "stuck") {
        spec.kind = DetectKind::stuck;
        if (call->arguments.size() != 2) throw bad("stuck takes a field and a duration: stuck(humidity, 10m)");
        spec.field = field(call->arguments[0]);
        spec.duration_ns = duration(call->arguments[1]);
        return spec;
    }
    if (call->function == "silence") {
        spec.kind = DetectKind::silence;
        if (call->arguments.size() != 1) throw bad("silence takes a duration: silence(5m)");
        spec.duration_ns = duration(call->arguments[0]);
        return spec;
    }
    throw bad(fmt::format("unknown detector '{}' (zscore, stuck, silence)", call->function));
}

}  // namespace mh::aggregate
