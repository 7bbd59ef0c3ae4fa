#include "store/plot.h"

#include "message/time.h"
#include "wire/frame.h"

#include <capnp/serialize.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <ctime>
#include <map>

namespace mh::store {

namespace {

// Layout in pixels: a title line above the plot area, the y labels left of it, time
// labels and the time range below it, then one legend line per series.
constexpr unsigned k_margin_left = 76;
constexpr unsigned k_margin_right = 24;
constexpr unsigned k_margin_top = 40;
constexpr unsigned k_axis_bottom = 44;
constexpr unsigned k_legend_line = 18;
constexpr unsigned k_min_plot_height = 60;
constexpr double k_min_label_gap_px = 14;      // a y tick this close to the min or max label is left out
constexpr double k_time_label_px = 110;        // at least this much room per time label
constexpr unsigned k_target_y_ticks = 5;

// Tableau 10: distinguishable, also for the colour blind; past ten, lines are dashed.
constexpr std::array<const char*, 10> k_palette = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

struct Suffix {
    std::string_view suffix, unit;
};
// Conventional unit suffixes of field names, longest first where one ends another.
constexpr std::array<Suffix, 21> k_unit_suffixes = {{
    {"_celsius", "°C"}, {"_fahrenheit", "°F"}, {"_kelvin", "K"}, {"_percent", "%"}, {"_pct", "%"},
    {"_hpa", "hPa"},    {"_kpa", "kPa"},       {"_pa", "Pa"},    {"_kwh", "kWh"},   {"_mv", "mV"},
    {"_ma", "mA"},      {"_kw", "kW"},         {"_ms", "ms"},    {"_rpm", "rpm"},   {"_mm", "mm"},
    {"_c", "°C"},       {"_f", "°F"},          {"_v", "V"},      {"_a", "A"},       {"_w", "W"},
    {"_s", "s"},
}};

void append_escaped(std::string& out, std::string_view text) {
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default:
                // XML 1.0 has no place for most control characters, not even escaped.
                if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') out += "\xEF\xBF\xBD";
                else out += c;
        }
    }
}

std::string escaped(std::string_view text) {
    std::string out;
    append_escaped(out, text);
    return out;
}

std::optional<double> numeric(const schema::Field::Reader& field) {
    auto value = field.getValue();
    switch (value.which()) {
        case schema::Field::Value::FLOAT: {
            double v = value.getFloat();
            if (std::isfinite(v)) return v;
            return std::nullopt;
        }
        case schema::Field::Value::INT: return static_cast<double>(value.getInt());
        case schema::Field::Value::BOOL: return value.getBool() ? 1.0 : 0.0;
        default: return std::nullopt;
    }
}

// One pixel column of one series: the extremes and when they occurred, so that the two
// points are drawn in the order they happened.
struct Column {
    double min = 0, max = 0;
    int64_t min_at = 0, max_at = 0;
    bool used = false;
};

struct Series {
    size_t source, field;
    std::vector<Column> columns;
    uint64_t values = 0;
    double min = 0, max = 0;
};

// Frames of one source (from its index, in event-time order) into its series' columns.
class PlotSink final : public wire::FrameSink {
public:
    PlotSink(const PlotSpec& spec, std::vector<Series>& series, std::vector<std::string>& units, int64_t t0,
             __int128 span, unsigned columns)
        : m_spec(spec), m_series(series), m_units(units), m_t0(t0), m_span(span), m_columns(columns) {}

    void start_source(size_t first_series) { m_first = first_series; }

    void write(const wire::Frame& frame) override {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                             wire::reader_options({frame.byte_count()}));
        auto message = reader.getRoot<schema::Message>();
        int64_t time = message.getTime();
        unsigned column = static_cast<unsigned>(std::clamp<__int128>(
            (static_cast<__int128>(time) - m_t0) * m_columns / m_span, 0, m_columns - 1));
        auto fields = message.getFields();
        for (size_t f = 0; f < m_spec.fields.size(); ++f) {
            std::string_view wanted = m_spec.fields[f];
            for (auto field : fields) {
                auto name = field.getName();
                if (std::string_view(name.begin(), name.size()) != wanted) continue;
                if (auto v = numeric(field)) add(m_series[m_first + f], column, time, *v);
                if (m_units[f].empty()) m_units[f] = derive_unit(wanted, message);
                break;
            }
        }
    }
    void flush() override {}

private:
    static void add(Series& series, unsigned column, int64_t time, double v) {
        series.min = series.values ? std::min(series.min, v) : v;
        series.max = series.values ? std::max(series.max, v) : v;
        ++series.values;
        Column& c = series.columns[column];
        if (!c.used) {
            c = {v, v, time, time, true};
            return;
        }
        if (v < c.min) c.min = v, c.min_at = time;
        if (v > c.max) c.max = v, c.max_at = time;
    }

    const PlotSpec& m_spec;
    std::vector<Series>& m_series;
    std::vector<std::string>& m_units;
    int64_t m_t0;
    __int128 m_span;
    unsigned m_columns;
    size_t m_first = 0;
};

// 1, 2 or 5 times a power of ten, the smallest at least `rough`.
double nice_step(double rough) {
    double power = std::pow(10.0, std::floor(std::log10(rough)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * power >= rough) return m * power;
    return 10 * power;
}

constexpr int64_t k_second = k_ns_per_second, k_minute = 60 * k_second, k_hour = 60 * k_minute,
                  k_day = 24 * k_hour;
constexpr std::array<int64_t, 30> k_time_steps = {
    k_ns_per_ms,  2 * k_ns_per_ms, 5 * k_ns_per_ms, 10 * k_ns_per_ms, 20 * k_ns_per_ms, 50 * k_ns_per_ms,
    100 * k_ns_per_ms, 200 * k_ns_per_ms, 500 * k_ns_per_ms, k_second, 2 * k_second, 5 * k_second,
    10 * k_second, 15 * k_second, 30 * k_second, k_minute, 2 * k_minute, 5 * k_minute, 10 * k_minute,
    15 * k_minute, 30 * k_minute, k_hour, 2 * k_hour, 3 * k_hour, 6 * k_hour, 12 * k_hour, k_day,
    2 * k_day, 7 * k_day, 28 * k_day};

// A time tick's label, as precise as the step between ticks needs (UTC).
std::string time_label(int64_t t, int64_t step) {
    std::string full = format_rfc3339(t);  // 2026-01-01T12:34:56.789Z
    if (step >= k_day) return full.substr(0, 10);
    if (step >= k_minute && t % k_day == 0) return full.substr(5, 5);  // midnight: the day, 01-02
    if (step >= k_minute) return full.substr(11, 5);
    if (step >= k_second) return full.substr(11, 8);
    // sub-second: seconds and milliseconds
    int64_t ms = ((t % k_second) + k_second) % k_second / k_ns_per_ms;
    return fmt::format("{}.{:03}", full.substr(17, 2), ms);
}

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

}  // namespace

std::string derive_unit(std::string_view field, schema::Message::Reader message) {
    std::vector<std::string> candidates = {std::string(field) + ".unit", std::string(field) + "_unit"};
    if (field.ends_with(".value")) candidates.push_back(std::string(field.substr(0, field.size() - 6)) + ".unit");
    for (auto f : message.getFields()) {
        if (!f.getValue().isText()) continue;
        auto name = f.getName();
        std::string_view n(name.begin(), name.size());
        for (const auto& candidate : candidates)
            if (n == candidate) {
                auto text = f.getValue().getText();
                return std::string(text.begin(), text.size());
            }
    }
    std::string lower;
    for (char c : field) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& s : k_unit_suffixes)
        if (lower.size() > s.suffix.size() && lower.ends_with(s.suffix)) return std::string(s.unit);
    return {};
}

PlotResult plot(Store& store, const PlotSpec& spec) {
    auto usage = [](const std::string& text) { throw Error(ExitCode::usage, text); };
    if (spec.fields.empty()) usage("plot: give at least one --field");
    if (spec.sources.empty()) usage("plot: give at least one --source (a name or a glob such as 'sensor-00*')");
    if (spec.units.size() > 1 && spec.units.size() != spec.fields.size())
        usage(fmt::format("plot: {} --unit for {} --field: give one for all, or one per field", spec.units.size(),
                          spec.fields.size()));
    if (spec.width < k_min_plot_width || spec.width > k_max_plot_pixels || spec.height > k_max_plot_pixels)
        usage(fmt::format("plot: --width from {} to {}, --height up to {} pixels", k_min_plot_width,
                          k_max_plot_pixels, k_max_plot_pixels));
    if (spec.from_ns >= spec.to_ns) usage("plot: --from must be before --to");

    PlotResult result;
    std::vector<std::string> sources;
    for (const auto& pattern : spec.sources) {
        auto matched = store.sources_matching(pattern);
        if (matched.empty()) result.unmatched.push_back(pattern);
        for (auto& s : matched)
            if (std::find(sources.begin(), sources.end(), s) == sources.end()) sources.push_back(std::move(s));
    }
    size_t series_count = sources.size() * spec.fields.size();
    if (series_count > k_max_plot_series)
        usage(fmt::format("plot: {} sources times {} fields is {} lines, more than the {} one chart can show: "
                          "narrow --source",
                          sources.size(), spec.fields.size(), series_count, k_max_plot_series));

    unsigned legend_px = static_cast<unsigned>(std::max<size_t>(series_count, 1)) * k_legend_line + 8;
    if (spec.height < k_margin_top + k_axis_bottom + legend_px + k_min_plot_height)
        usage(fmt::format("plot: --height {} leaves no room for the plot and a legend of {} lines: at least {}",
                          spec.height, series_count, k_margin_top + k_axis_bottom + legend_px + k_min_plot_height));
    const unsigned plot_w = spec.width - k_margin_left - k_margin_right;
    const unsigned plot_h = spec.height - k_margin_top - k_axis_bottom - legend_px;
    const double left = k_margin_left, top = k_margin_top, bottom = top + plot_h;
    result.plot_columns = plot_w;

    // The time axis: --from/--to where given, else the data's own extent (from the index).
    std::optional<int64_t> first, last;
    for (const auto& s : sources)
        if (auto range = store.source_time_range(s, spec.from_ns, spec.to_ns)) {
            first = first ? std::min(*first, range->first_ns) : range->first_ns;
            last = last ? std::max(*last, range->last_ns) : range->last_ns;
        }
    bool bounded_from = spec.from_ns != std::numeric_limits<int64_t>::min();
    bool bounded_to = spec.to_ns != std::numeric_limits<int64_t>::max();
    int64_t t0 = bounded_from ? spec.from_ns : first.value_or(bounded_to ? spec.to_ns - k_hour : 0);
    int64_t t1 = bounded_to ? spec.to_ns - 1 : last.value_or(t0 + k_hour);  // inclusive
    if (t1 < t0) t1 = t0;
    __int128 span = static_cast<__int128>(t1) - t0 + 1;

    std::vector<std::string> units(spec.fields.size());
    for (size_t f = 0; f < units.size(); ++f)
        if (!spec.units.empty()) units[f] = spec.units.size() == 1 ? spec.units[0] : spec.units[f];

    std::vector<Series> series;
    for (size_t s = 0; s < sources.size(); ++s)
        for (size_t f = 0; f < spec.fields.size(); ++f)
            series.push_back({s, f, std::vector<Column>(plot_w), 0, 0, 0});
    PlotSink sink(spec, series, units, t0, span, plot_w);
    for (size_t s = 0; s < sources.size(); ++s) {
        if (spec.stop && spec.stop->load(std::memory_order_relaxed)) break;
        Query query;
        query.source = sources[s];
        query.from_ns = t0;
        query.to_ns = static_cast<int64_t>(std::min<__int128>(static_cast<__int128>(t1) + 1,
                                                              std::numeric_limits<int64_t>::max()));
        if (bounded_to) query.to_ns = spec.to_ns;
        query.stop = spec.stop;
        sink.start_source(s * spec.fields.size());
        result.entries_read += store.query(query, sink).entries_read;
    }

    // The value axis spans exactly the data's minimum to its maximum, both labelled.
    bool any = false;
    double ymin = 0, ymax = 1;
    for (const auto& line : series) {
        if (!line.values) continue;
        ymin = any ? std::min(ymin, line.min) : line.min;
        ymax = any ? std::max(ymax, line.max) : line.max;
        any = true;
    }
    bool flat = any && ymin == ymax;
    double lo = ymin, hi = ymax;
    if (flat) {
        double pad = ymin == 0 ? 1 : std::abs(ymin) * 0.05;
        lo -= pad, hi += pad;
    }
    auto y_of = [&](double v) { return top + (hi - v) / (hi - lo) * plot_h; };
    auto x_of = [&](int64_t t) {
        return left + static_cast<double>(static_cast<__int128>(t) - t0) * plot_w / static_cast<double>(span);
    };

    std::string out;
    out.reserve(4096 + series.size() * plot_w * 24);
    std::string title = spec.title;
    if (title.empty()) {
        std::string field_list, source_list;
        for (const auto& f : spec.fields) field_list += (field_list.empty() ? "" : ", ") + f;
        for (size_t i = 0; i < std::min<size_t>(sources.size(), 3); ++i)
            source_list += (i ? ", " : "") + sources[i];
        if (sources.size() > 3) source_list += fmt::format(" and {} more", sources.size() - 3);
        if (sources.empty()) source_list = "no stored source";
        title = field_list + " of " + source_list;
    }
    fmt::format_to(std::back_inserter(out),
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
                   "font-family=\"sans-serif\" font-size=\"11\">\n"
                   "<title>{2}</title>\n"
                   "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
                   "<text x=\"{3}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{2}</text>\n",
                   spec.width, spec.height, escaped(title), k_margin_left);

    // Value ticks: round numbers inside the range, light grid lines behind the data.
    fmt::format_to(std::back_inserter(out), "<g class=\"grid\" stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    std::string labels;
    if (any) {
        double step = nice_step((hi - lo) / k_target_y_ticks);
        int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step))));
        for (double v = std::ceil(lo / step) * step; v <= hi; v += step) {
            double y = y_of(v);
            if (y - top < k_min_label_gap_px || bottom - y < k_min_label_gap_px) continue;
            fmt::format_to(std::back_inserter(out), "<line x1=\"{}\" y1=\"{:.2f}\" x2=\"{}\" y2=\"{:.2f}\"/>\n", left,
                           y, left + plot_w, y);
            fmt::format_to(std::back_inserter(labels),
                           "<text class=\"y-tick\" x=\"{}\" y=\"{:.2f}\" text-anchor=\"end\">{:.{}f}</text>\n",
                           left - 6, y + 4, v, decimals);
        }
    }
    // Time ticks: the smallest round step that leaves each label its room.
    int64_t time_step = k_time_steps.back();
    for (int64_t candidate : k_time_steps)
        if (static_cast<double>(span) / static_cast<double>(candidate) <= plot_w / k_time_label_px) {
            time_step = candidate;
            break;
        }
    while (static_cast<double>(span) / static_cast<double>(time_step) > plot_w / k_time_label_px)
        time_step *= 2;  // spans of years
    for (int64_t t = (floor_div(t0, time_step) + 1) * time_step; t <= t1; t += time_step) {
        double x = x_of(t);
        fmt::format_to(std::back_inserter(out), "<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\"/>\n", x, top, x,
                       bottom);
        fmt::format_to(std::back_inserter(labels),
                       "<text class=\"x-tick\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x,
                       bottom + 16, time_label(t, time_step));
        if (t > std::numeric_limits<int64_t>::max() - time_step) break;
    }
    out += "</g>\n";
    fmt::format_to(std::back_inserter(out),
                   "<rect class=\"plot-area\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
                   "stroke=\"#888\"/>\n",
                   left, top, plot_w, plot_h);
    out += labels;
    if (any) {
        // The extremes, exactly as stored: the top and bottom edges of the plot area.
        fmt::format_to(std::back_inserter(out),
                       "<text class=\"y-max\" x=\"{}\" y=\"{:.2f}\" text-anchor=\"end\">{}</text>\n"
                       "<text class=\"y-min\" x=\"{}\" y=\"{:.2f}\" text-anchor=\"end\">{}</text>\n",
                       left - 6, y_of(hi) + 4, hi, left - 6, y_of(lo) + 4, lo);
    } else {
        fmt::format_to(std::back_inserter(out),
                       "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
                       left + plot_w / 2.0, top + plot_h / 2.0);
    }
    std::string unit_list;
    for (const auto& u : units)
        if (!u.empty() && unit_list.find(u) == std::string::npos) unit_list += (unit_list.empty() ? "" : ", ") + u;
    if (!unit_list.empty())
        fmt::format_to(std::back_inserter(out), "<text class=\"y-unit\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                       left - 6, top - 8, escaped(unit_list));
    fmt::format_to(std::back_inserter(out),
                   "<text class=\"x-range\" x=\"{}\" y=\"{}\" fill=\"#555\">{} to {} (UTC)</text>\n", left,
                   bottom + 34, format_rfc3339(t0), format_rfc3339(t1));

    // The lines: per pixel column, its minimum and maximum in the order they happened.
    size_t index = 0;
    for (const auto& line : series) {
        const std::string& source = sources[line.source];
        const std::string& field = spec.fields[line.field];
        const char* colour = k_palette[index % k_palette.size()];
        SeriesSummary summary{source, field, units[line.field], line.values, line.min, line.max, 0};
        fmt::format_to(std::back_inserter(out),
                       "<polyline class=\"series\" data-source=\"{}\" data-field=\"{}\" fill=\"none\" stroke=\"{}\" "
                       "stroke-width=\"1.5\" stroke-linejoin=\"round\"{} points=\"",
                       escaped(source), escaped(field), colour,
                       index >= k_palette.size() ? " stroke-dasharray=\"6 3\"" : "");
        auto point = [&](unsigned column, double v) {
            fmt::format_to(std::back_inserter(out), "{}{:.1f},{:.2f}", summary.points ? " " : "", left + column + 0.5,
                           y_of(v));
            ++summary.points;
        };
        for (unsigned c = 0; c < plot_w; ++c) {
            const Column& column = line.columns[c];
            if (!column.used) continue;
            if (column.min == column.max) {
                point(c, column.min);
            } else if (column.min_at <= column.max_at) {
                point(c, column.min), point(c, column.max);
            } else {
                point(c, column.max), point(c, column.min);
            }
        }
        out += "\"/>\n";

        double y = bottom + k_axis_bottom + static_cast<double>(index) * k_legend_line + 4;
        std::string text = source + "  " + field;
        if (!summary.unit.empty()) text += " (" + summary.unit + ")";
        text += line.values ? fmt::format("   min {}  max {}  {} values", line.min, line.max, line.values)
                            : std::string("   no values");
        fmt::format_to(std::back_inserter(out),
                       "<g class=\"legend\"><line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\" "
                       "stroke-width=\"3\"{}/><text x=\"{}\" y=\"{:.1f}\">{}</text></g>\n",
                       left, y, left + 24, y, colour, index >= k_palette.size() ? " stroke-dasharray=\"6 3\"" : "",
                       left + 32, y + 4, escaped(text));
        result.series.push_back(std::move(summary));
        ++index;
    }
    out += "</svg>\n";
    result.svg = std::move(out);
    return result;
}

}  // namespace mh::store
