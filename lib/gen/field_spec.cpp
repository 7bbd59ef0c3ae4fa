#include "gen/field_spec.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace mh::gen {
namespace {

constexpr std::string_view k_dist_list =
    "normal(mean,stddev), uniform(lo,hi), walk(start,step), const(v) or int(lo,hi)";
constexpr double k_max_exact_int = 9007199254740992.0;  // 2^53: ints travel as doubles inside

struct DistSyntax {
    std::string_view word;
    Dist dist;
    size_t arity;
    std::string_view form;
};

constexpr DistSyntax k_syntax[] = {
    {"normal", Dist::normal, 2, "normal(mean,stddev)"}, {"uniform", Dist::uniform, 2, "uniform(lo,hi)"},
    {"walk", Dist::walk, 2, "walk(start,step)"},        {"const", Dist::constant, 1, "const(v)"},
    {"int", Dist::integer, 2, "int(lo,hi)"},
};

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > k_max_field_name_chars) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-';
    });
}

[[noreturn]] void bad_spec(std::string_view spec, std::string_view why) {
    throw Error(ExitCode::usage, fmt::format("--field '{}': {}", spec, why));
}

}  // namespace

FieldSpec parse_field_spec(std::string_view spec) {
    const size_t equals = spec.find('=');
    if (equals == std::string_view::npos)
        bad_spec(spec, fmt::format("expected NAME=DIST where DIST is {}", k_dist_list));
    FieldSpec field;
    std::string_view name = trim(spec.substr(0, equals));
    if (!valid_name(name))
        bad_spec(spec, fmt::format("the field name must be 1 to {} letters, digits, '_', '.' or '-'",
                                   k_max_field_name_chars));
    field.name = std::string(name);

    std::string_view dist = trim(spec.substr(equals + 1));
    const size_t open = dist.find('(');
    if (open == std::string_view::npos || dist.back() != ')')
        bad_spec(spec, fmt::format("expected a distribution: {}", k_dist_list));
    std::string_view word = trim(dist.substr(0, open));
    auto syntax = std::find_if(std::begin(k_syntax), std::end(k_syntax),
                               [&](const DistSyntax& s) { return s.word == word; });
    if (syntax == std::end(k_syntax))
        bad_spec(spec, fmt::format("unknown distribution '{}', expected {}", word, k_dist_list));
    field.dist = syntax->dist;

    std::string_view args = dist.substr(open + 1, dist.size() - open - 2);
    double values[2] = {0, 0};
    size_t count = 0;
    for (;;) {
        const size_t comma = args.find(',');
        std::string_view arg = trim(args.substr(0, comma));
        if (count == syntax->arity)
            bad_spec(spec, fmt::format("too many numbers, expected {}", syntax->form));
        double value = 0;
        auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), value);
        if (arg.empty() || ec != std::errc() || end != arg.data() + arg.size() || !std::isfinite(value))
            bad_spec(spec, fmt::format("'{}' is not a number, expected {}", arg, syntax->form));
        values[count++] = value;
        if (comma == std::string_view::npos) break;
        args.remove_prefix(comma + 1);
    }
    if (count != syntax->arity)
        bad_spec(spec, fmt::format("{} number{} given, expected {}", count, count == 1 ? "" : "s", syntax->form));
    field.a = values[0];
    field.b = values[1];

    switch (field.dist) {
    case Dist::normal:
        if (field.b < 0) bad_spec(spec, "the standard deviation must not be negative");
        break;
    case Dist::walk:
        if (field.b < 0) bad_spec(spec, "the step must not be negative");
        break;
    case Dist::uniform:
        if (field.a > field.b) bad_spec(spec, "lo must not be greater than hi");
        break;
    case Dist::integer:
        if (field.a != std::trunc(field.a) || field.b != std::trunc(field.b))
            bad_spec(spec, "int(lo,hi) takes whole numbers");
        if (field.a > field.b) bad_spec(spec, "lo must not be greater than hi");
        if (std::fabs(field.a) > k_max_exact_int || std::fabs(field.b) > k_max_exact_int)
            bad_spec(spec, "the bounds must lie within ±2^53");
        break;
    default:
        break;
    }
    return field;
}

std::vector<FieldSpec> default_fields() {
    return {
        {"temperature", Dist::temperature, 0, 0},
        {"humidity", Dist::humidity, 0, 0},
        {"pressure", Dist::pressure, 0, 0},
        {"battery", Dist::battery, 0, 0},
    };
}

std::vector<FieldSpec> select_fields(const std::vector<std::string>& keep, const std::vector<std::string>& specs) {
    std::vector<FieldSpec> fields;
    const std::vector<FieldSpec> defaults = default_fields();
    if (keep.empty() && specs.empty()) return defaults;
    for (const auto& raw : keep) {
        std::string_view name = trim(raw);
        auto found = std::find_if(defaults.begin(), defaults.end(), [&](const FieldSpec& f) { return f.name == name; });
        if (found == defaults.end())
            throw Error(ExitCode::usage,
                        fmt::format("--fields: '{}' is not a default field; the defaults are temperature, "
                                    "humidity, pressure and battery (use --field NAME=DIST for others)",
                                    name));
        fields.push_back(*found);
    }
    for (const auto& spec : specs) fields.push_back(parse_field_spec(spec));

    for (size_t i = 0; i < fields.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (fields[i].name == fields[j].name)
                throw Error(ExitCode::usage, fmt::format("field '{}' is given twice", fields[i].name));
    if (fields.empty()) throw Error(ExitCode::usage, "--fields: no fields selected");
    if (fields.size() > k_max_fields)
        throw Error(ExitCode::usage, fmt::format("{} fields given; at most {} are supported", fields.size(), k_max_fields));
    return fields;
}

std::string describe(const FieldSpec& spec) {
    switch (spec.dist) {
    case Dist::normal: return fmt::format("normal({},{})", spec.a, spec.b);
    case Dist::uniform: return fmt::format("uniform({},{})", spec.a, spec.b);
    case Dist::walk: return fmt::format("walk({},{})", spec.a, spec.b);
    case Dist::constant: return fmt::format("const({})", spec.a);
    case Dist::integer: return fmt::format("int({},{})", spec.a, spec.b);
    case Dist::temperature: return "temperature model";
    case Dist::humidity: return "humidity model";
    case Dist::pressure: return "pressure model";
    case Dist::battery: return "battery model";
    }
    return "?";
}

}  // namespace mh::gen
