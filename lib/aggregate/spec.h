// What mh-aggregate computes, parsed from its options: the aggregates of --agg
// ("count(), mean(temperature) as avg_t, p99(temperature)"), the group keys of --by and the
// detector rules of --detect ("zscore(temperature) > 4", "stuck(humidity, 10m)",
// "silence(5m)"). Parse errors throw Error(usage) naming the option and the item.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mh::aggregate {

enum class AggKind : uint8_t {
    count,     // count(): messages; count(f): messages that have f
    sum,
    min,
    max,
    mean,
    stddev,    // sample standard deviation (n - 1), as Miller's stats1 and numpy ddof=1
    first,     // the value with the smallest event time (any type)
    last,      // the value with the largest event time (any type)
    rate,      // rate(): messages per second of window; rate(f): change of f per second
    quantile,  // pNN(f), median(f): DDSketch, relative error <= 1 %
    distinct,  // distinct(f): HyperLogLog, exact up to 1024 values, error <= 2 %
};

struct AggSpec {
    AggKind kind;
    std::string field;  // empty for count() and rate()
    double quantile = 0;  // 0..1 for AggKind::quantile
    std::string name;     // output field name: "as NAME", or the default (count, mean_temperature)
};

// The comma list of --agg, items `FUNC()` or `FUNC(FIELD)`, each with an optional `as NAME`.
// Field names are identifiers with dots (motor.rpm) or `backquoted` text.
std::vector<AggSpec> parse_aggregates(std::string_view text);

enum class KeyKind : uint8_t { source, gateway, kind, field };

struct KeySpec {
    KeyKind kind;
    std::string name;  // the field's name; for headers "source", "gateway", "kind"
};

constexpr size_t k_max_keys = 16;

// --by items (comma lists already split): source, gateway, kind, or any field name.
std::vector<KeySpec> parse_keys(const std::vector<std::string>& items);

enum class DetectKind : uint8_t { zscore, stuck, silence };

struct DetectSpec {
    DetectKind kind;
    std::string field;        // zscore, stuck
    double threshold = 0;     // zscore: alert when |z| > threshold
    double alpha = 0;         // zscore: weight of a new value in the moving mean and variance
    int64_t duration_ns = 0;  // stuck, silence
    std::string name;         // "NAME=" prefix, or the rule's text
};

constexpr double k_default_zscore_alpha = 0.05;

// `[NAME=]zscore(FIELD[, ALPHA]) > K`, `[NAME=]stuck(FIELD, DURATION)`, `[NAME=]silence(DURATION)`.
DetectSpec parse_detect(std::string_view text);

// Names of the output fields an aggregate message always has.
constexpr std::string_view k_window_start_field = "window_start";
constexpr std::string_view k_window_end_field = "window_end";
constexpr std::string_view k_evicted_field = "evicted";
// A --by kind key goes out under this name: "kind" is the header, and it says "aggregate".
constexpr std::string_view k_input_kind_field = "input_kind";

}  // namespace mh::aggregate
