// mh-store plot: a self-contained SVG line chart of fields of sources over event time.
// Read through the source index only (never a whole-store scan), and downsampled as it
// reads to the minimum and maximum of each pixel column, so a year of a sensor draws in
// one pass over its index entries and the picture holds at most two points per column.
#pragma once

#include "core/stop.h"
#include "store/store.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace mh::store {

constexpr unsigned k_default_plot_width = 960;  // pixels
constexpr unsigned k_default_plot_height = 480;
constexpr unsigned k_min_plot_width = 240;
constexpr unsigned k_max_plot_pixels = 20000;  // either side
constexpr size_t k_max_plot_series = 64;       // lines one chart can tell apart at all

struct PlotSpec {
    std::vector<std::string> sources;  // names or globs (sensor-00*)
    std::vector<std::string> fields;   // numeric fields: float, int (bool reads as 0 or 1)
    std::vector<std::string> units;    // none (derived), one for every field, or one per field
    int64_t from_ns = std::numeric_limits<int64_t>::min();  // inclusive
    int64_t to_ns = std::numeric_limits<int64_t>::max();    // exclusive
    unsigned width = k_default_plot_width;
    unsigned height = k_default_plot_height;
    std::string title;  // empty: the fields and sources
    const StopFlag* stop = nullptr;
};

struct SeriesSummary {
    std::string source, field, unit;
    uint64_t values = 0;  // numeric values read
    double min = 0, max = 0;
    size_t points = 0;  // polyline points drawn: at most two per pixel column
};

struct PlotResult {
    std::string svg;
    std::vector<SeriesSummary> series;
    uint64_t entries_read = 0;           // source index entries read, all series together
    std::vector<std::string> unmatched;  // --source patterns that named no stored source
    unsigned plot_columns = 0;           // pixel columns of the plot area
};

// Throws Error(usage) for a spec that cannot be drawn (no field, too many series, a
// picture too small for its legend).
PlotResult plot(Store& store, const PlotSpec& spec);

// The unit of `field` when none is given: a text field beside it in `message` ("F.unit",
// "F_unit", or for "X.value" the "X.unit" next to it), else a conventional name suffix
// (temperature_c is °C, humidity_pct %, pressure_hpa hPa, ...). Empty when there is no telling.
std::string derive_unit(std::string_view field, schema::Message::Reader message);

}  // namespace mh::store
