// mh-store plot's parts: source globs resolved from the index, a source's time range from
// two cursor positionings, units derived from fields beside the value or a name suffix,
// and a chart with at most two points per pixel column that reaches the data's extremes.
#include "core/error.h"
#include "message/scratch_builder.h"
#include "store/append.h"
#include "store/plot.h"
#include "store/store.h"

#include "support/support.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

using namespace mh;
using namespace mh::store;

namespace {

class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "mh-plot-test.XXXXXX").string();
        m_path = ::mkdtemp(pattern.data());
    }
    ~TempDir() { std::filesystem::remove_all(m_path); }
    std::string db() const { return m_path + "/db"; }

private:
    std::string m_path;
};

// Messages with ids 1..n, source and time as given, and a float field "v".
struct Sample {
    std::string source;
    int64_t time;
    double v;
};

void store_samples(Store& store, const std::vector<Sample>& samples) {
    Batch batch;
    std::vector<std::vector<capnp::word>> keep;
    uint64_t n = 0;
    for (const auto& s : samples) {
        ScratchBuilder scratch;
        auto message = scratch.start();
        MessageId id{};
        ++n;
        for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<uint8_t>(n >> (8 * i));
        message.setId(kj::arrayPtr(id.data(), id.size()));
        message.setTime(s.time);
        message.setSource(s.source);
        auto field = message.initFields(1)[0];
        field.setName("v");
        field.getValue().setFloat(s.v);
        keep.push_back(test::frame_words(scratch.builder()));
        auto result = batch.add(wire::Frame{keep.back().data(), keep.back().size()}, {});
        ASSERT_TRUE(std::holds_alternative<Added>(result));
    }
    store.commit(batch);
}

StoreConfig writable() {
    StoreConfig config;
    config.access = Access::read_write;
    config.create = Create::yes;
    config.sync = Sync::none;
    return config;
}

}  // namespace

TEST(Plot, SourceGlobsAndTimeRangesComeFromTheIndex) {
    TempDir dir;
    Store store(dir.db(), writable());
    store_samples(store, {{"pump-1", 10, 1}, {"pump-2", 20, 2}, {"pump-2", 30, 3}, {"valve-1", 5, 4}, {"", 7, 5}});
    EXPECT_EQ(store.sources_matching("pump-*"), (std::vector<std::string>{"pump-1", "pump-2"}));
    EXPECT_EQ(store.sources_matching("*-1"), (std::vector<std::string>{"pump-1", "valve-1"}));
    EXPECT_EQ(store.sources_matching("valve-1"), (std::vector<std::string>{"valve-1"}));
    EXPECT_TRUE(store.sources_matching("valve-2").empty());
    EXPECT_TRUE(store.sources_matching("z*").empty());

    auto all = store.source_time_range("pump-2", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    ASSERT_TRUE(all);
    EXPECT_EQ(all->first_ns, 20);
    EXPECT_EQ(all->last_ns, 30);
    auto before_30 = store.source_time_range("pump-2", 0, 30);
    ASSERT_TRUE(before_30);
    EXPECT_EQ(before_30->last_ns, 20);
    EXPECT_FALSE(store.source_time_range("pump-2", 31, 100));
    EXPECT_FALSE(store.source_time_range("pump-2", 21, 30));
    EXPECT_FALSE(store.source_time_range("nobody", 0, 100));
}

TEST(Plot, UnitsComeFromAFieldBesideTheValueOrANameSuffix) {
    ScratchBuilder scratch;
    auto message = scratch.start();
    auto fields = message.initFields(2);
    fields[0].setName("flow.unit");
    fields[0].getValue().setText("l/min");
    fields[1].setName("speed_unit");
    fields[1].getValue().setText("m/s");
    auto reader = message.asReader();
    EXPECT_EQ(derive_unit("flow.value", reader), "l/min");
    EXPECT_EQ(derive_unit("flow", reader), "l/min");
    EXPECT_EQ(derive_unit("speed", reader), "m/s");
    EXPECT_EQ(derive_unit("temperature_c", reader), "°C");
    EXPECT_EQ(derive_unit("Pressure_hPa", reader), "hPa");
    EXPECT_EQ(derive_unit("temperature", reader), "");
    EXPECT_EQ(derive_unit("_c", reader), "");
}

TEST(Plot, DownsamplesToTwoPointsPerColumnAndReachesTheExtremes) {
    TempDir dir;
    Store store(dir.db(), writable());
    std::vector<Sample> samples;
    for (int i = 0; i < 20000; ++i) samples.push_back({"s", i * 1000, std::sin(i / 300.0) * 50 + (i == 777 ? 80 : 0)});
    store_samples(store, samples);

    PlotSpec spec;
    spec.sources = {"s"};
    spec.fields = {"v", "missing"};
    spec.width = 300;
    PlotResult result = plot(store, spec);
    EXPECT_EQ(result.entries_read, 20000u);
    ASSERT_EQ(result.series.size(), 2u);
    EXPECT_EQ(result.series[0].values, 20000u);
    EXPECT_LE(result.series[0].points, 2u * result.plot_columns);
    EXPECT_GT(result.series[0].points, result.plot_columns);
    EXPECT_EQ(result.series[1].values, 0u);
    EXPECT_EQ(result.series[1].points, 0u);
    double max = -1e9;
    for (const auto& s : samples) max = std::max(max, s.v);
    EXPECT_EQ(result.series[0].max, max);
    EXPECT_NE(result.svg.find(fmt::format("<text class=\"y-max\" x=\"70\" y=\"44.00\" text-anchor=\"end\">{}</text>", max)),
              std::string::npos);
    size_t polylines = 0;
    for (size_t at = result.svg.find("<polyline"); at != std::string::npos; at = result.svg.find("<polyline", at + 1))
        ++polylines;
    EXPECT_EQ(polylines, 2u);

    spec.sources = {"*"};
    spec.fields = {"v"};
    spec.height = 120;
    EXPECT_THROW(plot(store, spec), Error);  // no room for the legend
}
