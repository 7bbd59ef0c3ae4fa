// What the simulator puts in each message's fields: the four default sensor models
// and the distributions a user can ask for with --field NAME=DIST.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mh::gen {

enum class Dist {
    normal,       // normal(mean,stddev): independent draws
    uniform,      // uniform(lo,hi): independent draws
    walk,         // walk(start,step): per source, each report adds a normal step of sd `step`
    constant,     // const(v)
    integer,      // int(lo,hi): independent uniform integers, both ends included (an int field)
    temperature,  // default: per-source baseline 18..26 °C, daily cycle, noise sd 0.5
    humidity,     // default: per-source baseline 30..70 %, slow wander, drier when warmer
    pressure,     // default: per-source baseline ~1013 hPa, slow weather-like wander
    battery,      // default: per-source level from ~100 %, slowly falling, swapped at 5 %
};

struct FieldSpec {
    std::string name;
    Dist dist = Dist::constant;
    double a = 0;  // mean, lo, start or v
    double b = 0;  // stddev, hi or step

    bool is_int() const { return dist == Dist::integer; }
    friend bool operator==(const FieldSpec&, const FieldSpec&) = default;
};

constexpr size_t k_max_fields = 64;
constexpr size_t k_max_field_name_chars = 64;

// "NAME=DIST", e.g. "rpm=normal(1500,40)". Throws Error(usage) naming the spec and
// what was expected.
FieldSpec parse_field_spec(std::string_view spec);

// temperature, humidity, pressure, battery.
std::vector<FieldSpec> default_fields();

// The fields of a run: `keep` picks default fields by name (all four when empty and no
// `specs` are given, none when only `specs` are), then every --field spec follows.
// Throws Error(usage) for an unknown default name, a name given twice, or no fields.
std::vector<FieldSpec> select_fields(const std::vector<std::string>& keep, const std::vector<std::string>& specs);

// The DIST part written back, e.g. "normal(1500,40)" (for --help and logs).
std::string describe(const FieldSpec& spec);

}  // namespace mh::gen
