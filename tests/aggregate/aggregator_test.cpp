// The windowing engine on hand-made messages: windows, watermark and lateness, sessions,
// the group cap, barriers, detectors; and the option parsers.
#include "aggregate/aggregator.h"
#include "core/error.h"
#include "message/scratch_builder.h"

#include <gtest/gtest.h>

#include <map>

using namespace mh;
using namespace mh::aggregate;

namespace {

constexpr int64_t S = 1'000'000'000;

struct Out {
    std::string kind, source;
    int64_t time = 0;
    std::map<std::string, double> numbers;
    std::map<std::string, std::string> texts;
};

class Harness {
  public:
    explicit Harness(AggregatorConfig config) : m_log("test"), m_agg(std::move(config), {}, m_log) {}

    Disposition send(std::string_view source, int64_t time, std::map<std::string, double> fields = {}) {
        auto message = m_builder.start();
        message.setSource(std::string(source));
        message.setKind("telemetry");
        message.setTime(time);
        auto list = message.initFields(static_cast<unsigned>(fields.size()));
        unsigned k = 0;
        for (auto& [name, value] : fields) {
            list[k].setName(name);
            list[k++].getValue().setFloat(value);
        }
        return process();
    }
    Disposition barrier(uint64_t number) {
        auto message = m_builder.start();
        message.getControl().initBarrier().setNumber(number);
        return process();
    }
    void close_all() {
        m_agg.close_all(0);
        collect();
    }
    Aggregator& agg() { return m_agg; }
    std::vector<Out> out;

  private:
    Disposition process() {
        m_bytes.clear();
        wire::append_frame(m_builder.builder(), m_bytes);
        wire::Frame frame{reinterpret_cast<const capnp::word*>(m_bytes.data()), m_bytes.size() / 8};
        Disposition d = m_agg.process(frame, 0);
        collect();
        return d;
    }
    void collect() {
        for (const auto& frame : m_agg.output()) {
            capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
            auto m = reader.getRoot<schema::Message>();
            Out o;
            o.kind = m.getKind();
            o.source = m.getSource();
            o.time = m.getTime();
            for (auto f : m.getFields()) {
                auto v = f.getValue();
                if (v.isFloat()) o.numbers[f.getName()] = v.getFloat();
                if (v.isInt()) o.numbers[f.getName()] = static_cast<double>(v.getInt());
                if (v.isBool()) o.numbers[f.getName()] = v.getBool();
                if (v.isText()) o.texts[f.getName()] = v.getText();
            }
            out.push_back(std::move(o));
        }
        m_agg.take_output();
    }
    Log m_log;
    Aggregator m_agg;
    ScratchBuilder m_builder;
    std::vector<std::byte> m_bytes;
};

AggregatorConfig tumbling(int64_t size, int64_t lateness, std::string agg = "count(), sum(v)") {
    AggregatorConfig c;
    c.size_ns = size;
    c.lateness_ns = lateness;
    c.keys = parse_keys({"source"});
    c.aggs = parse_aggregates(agg);
    return c;
}

}  // namespace

TEST(Spec, Aggregates) {
    auto specs = parse_aggregates("count(), mean(temperature) as avg_t, p99(temperature), p99_9(x), median(`odd name`), distinct(source)");
    ASSERT_EQ(specs.size(), 6u);
    EXPECT_EQ(specs[0].name, "count");
    EXPECT_EQ(specs[1].name, "avg_t");
    EXPECT_EQ(specs[2].kind, AggKind::quantile);
    EXPECT_DOUBLE_EQ(specs[2].quantile, 0.99);
    EXPECT_EQ(specs[2].name, "p99_temperature");
    EXPECT_DOUBLE_EQ(specs[3].quantile, 0.999);
    EXPECT_EQ(specs[4].field, "odd name");
    EXPECT_EQ(specs[5].kind, AggKind::distinct);
    for (const char* bad : {"", "mean()", "count() as", "p101(x)", "sum(a, b)", "frob(x)", "count() extra",
                            "count(), count()", "count() as window_start"})
        EXPECT_THROW(parse_aggregates(bad), Error) << bad;
}

TEST(Spec, Detectors) {
    auto z = parse_detect("hot=zscore(temperature, 0.1) > 4");
    EXPECT_EQ(z.kind, DetectKind::zscore);
    EXPECT_EQ(z.name, "hot");
    EXPECT_DOUBLE_EQ(z.alpha, 0.1);
    EXPECT_DOUBLE_EQ(z.threshold, 4);
    auto s = parse_detect("stuck(humidity, 10m)");
    EXPECT_EQ(s.duration_ns, 600 * S);
    EXPECT_EQ(s.name, "stuck(humidity, 10m)");
    EXPECT_EQ(parse_detect("silence(30s)").duration_ns, 30 * S);
    for (const char* bad : {"zscore(t)", "zscore(t) > -1", "stuck(h)", "silence(soon)", "whatever(x)", "silence(5s) > 3"})
        EXPECT_THROW(parse_detect(bad), Error) << bad;
}

TEST(Aggregator, TumblingWindowsCloseOnTheWatermark) {
    Harness h(tumbling(10 * S, 2 * S));
    h.send("a", 1 * S, {{"v", 1}});
    h.send("b", 2 * S, {{"v", 10}});
    h.send("a", 9 * S, {{"v", 2}});
    h.send("a", 11 * S, {{"v", 3}});  // watermark 9 s: nothing closes yet
    EXPECT_TRUE(h.out.empty());
    h.send("a", 8 * S, {{"v", 4}});   // out of order, within lateness
    h.send("a", 12 * S, {{"v", 5}});  // watermark 10 s: [0, 10) closes
    ASSERT_EQ(h.out.size(), 2u);
    EXPECT_EQ(h.out[0].source, "a");
    EXPECT_EQ(h.out[0].numbers["count"], 3);
    EXPECT_EQ(h.out[0].numbers["sum_v"], 7);
    EXPECT_EQ(h.out[0].time, 10 * S);
    EXPECT_EQ(h.out[1].source, "b");
    EXPECT_EQ(h.send("a", 9 * S, {{"v", 6}}), Disposition::late);
    EXPECT_EQ(h.agg().stats().late, 1u);
    h.close_all();
    ASSERT_EQ(h.out.size(), 3u);
    EXPECT_EQ(h.out[2].numbers["sum_v"], 8);
    EXPECT_EQ(h.out[2].numbers["window_start"], 10.0 * S);
}

TEST(Aggregator, BarrierIsReportedAndCounted) {
    Harness h(tumbling(S, 0));
    EXPECT_EQ(h.barrier(3), Disposition::barrier);
    EXPECT_EQ(h.agg().stats().barriers, 1u);
    EXPECT_EQ(h.agg().stats().messages, 0u);
}

TEST(Aggregator, GroupCapEvictsTheLeastRecentlySeen) {
    auto config = tumbling(100 * S, 0);
    config.max_groups = 2;
    Harness h(config);
    h.send("a", 1 * S, {{"v", 1}});
    h.send("b", 2 * S, {{"v", 1}});
    h.send("a", 3 * S, {{"v", 1}});
    h.send("c", 4 * S, {{"v", 1}});  // evicts b, the least recently seen
    ASSERT_EQ(h.out.size(), 1u);
    EXPECT_EQ(h.out[0].source, "b");
    EXPECT_EQ(h.out[0].numbers["evicted"], 1);
    EXPECT_EQ(h.agg().stats().evicted, 1u);
    EXPECT_EQ(h.agg().groups(), 2u);
    h.close_all();
    EXPECT_EQ(h.out.size(), 3u);
}

TEST(Aggregator, HoppingWindowsOverlap) {
    auto config = tumbling(10 * S, 0, "count()");
    config.window = WindowKind::hopping;
    config.hop_ns = 5 * S;
    Harness h(config);
    h.send("a", 7 * S);
    h.close_all();
    ASSERT_EQ(h.out.size(), 2u);
    EXPECT_EQ(h.out[0].numbers["window_start"], 0);
    EXPECT_EQ(h.out[1].numbers["window_start"], 5.0 * S);
}

TEST(Aggregator, RejectsImpossibleConfigurations) {
    Log log("test");
    auto config = tumbling(0, 0);
    EXPECT_THROW(Aggregator(config, {}, log), Error);
    config = tumbling(10 * S, 0);
    config.window = WindowKind::hopping;
    config.hop_ns = 20 * S;
    EXPECT_THROW(Aggregator(config, {}, log), Error);
}

TEST(Aggregator, ZscoreFindsASpikeAndNotTheNoise) {
    auto config = tumbling(3600 * S, 0, "count()");
    config.detects.push_back(parse_detect("zscore(v) > 5"));
    Harness h(config);
    uint64_t seed = 1;
    auto noise = [&] {  // deterministic, roughly uniform in [-1, 1)
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<double>(seed >> 11) / static_cast<double>(1ULL << 52) - 1;
    };
    for (int i = 0; i < 500; ++i) h.send("a", i * S, {{"v", 20 + noise()}});
    EXPECT_TRUE(h.out.empty());
    h.send("a", 500 * S, {{"v", 40}});
    ASSERT_EQ(h.out.size(), 1u);
    EXPECT_EQ(h.out[0].kind, "alert");
    EXPECT_EQ(h.out[0].texts["detector"], "zscore");
    EXPECT_GT(h.out[0].numbers["score"], 5);
    EXPECT_EQ(h.out[0].numbers["value"], 40);
}

TEST(Aggregator, StuckAndSilence) {
    auto config = tumbling(3600 * S, 0, "count()");
    config.detects.push_back(parse_detect("stuck(v, 10s)"));
    config.detects.push_back(parse_detect("silence(30s)"));
    Harness h(config);
    for (int i = 0; i <= 20; ++i) {
        h.send("a", i * S, {{"v", 5}});
        h.send("b", i * S, {{"v", static_cast<double>(i)}});
    }
    ASSERT_EQ(h.out.size(), 1u);  // a stuck once, at 10 s
    EXPECT_EQ(h.out[0].texts["detector"], "stuck");
    EXPECT_EQ(h.out[0].source, "a");
    EXPECT_EQ(h.out[0].numbers["duration"], 10);
    for (int i = 21; i <= 60; ++i) h.send("b", i * S, {{"v", static_cast<double>(i)}});
    ASSERT_EQ(h.out.size(), 2u);  // a silent since 20 s
    EXPECT_EQ(h.out[1].texts["detector"], "silence");
    EXPECT_EQ(h.out[1].source, "a");
    EXPECT_GE(h.out[1].numbers["duration"], 30);
    EXPECT_LT(h.out[1].numbers["duration"], 34);
}

TEST(Aggregator, SnapshotRestoresOpenWindowsAndDetectors) {
    auto config = tumbling(10 * S, S, "count(), sum(v), p50(v), distinct(v), first(v), stddev(v)");
    config.detects.push_back(parse_detect("stuck(v, 5s)"));
    Harness straight(config), first(config), resumed(config);
    auto feed = [](Harness& h, int from, int to) {
        for (int i = from; i < to; ++i) {
            h.send("a", i * S / 2, {{"v", static_cast<double>(i % 7)}});
            h.send("b", i * S / 2, {{"v", 3}});
        }
    };
    feed(straight, 0, 60);
    straight.close_all();
    feed(first, 0, 25);
    std::string bytes;
    first.agg().save(bytes);
    ASSERT_EQ(resumed.agg().load(std::as_bytes(std::span(bytes.data(), bytes.size()))), std::nullopt);
    EXPECT_EQ(resumed.agg().open_windows(), first.agg().open_windows());
    feed(resumed, 25, 60);
    resumed.close_all();
    std::vector<Out> joined = first.out;
    joined.insert(joined.end(), resumed.out.begin(), resumed.out.end());
    ASSERT_EQ(joined.size(), straight.out.size());
    for (size_t i = 0; i < joined.size(); ++i) {
        EXPECT_EQ(joined[i].source, straight.out[i].source) << i;
        EXPECT_EQ(joined[i].numbers, straight.out[i].numbers) << i;
        EXPECT_EQ(joined[i].texts, straight.out[i].texts) << i;
    }

    // Every truncation is refused, and leaves the aggregator empty.
    for (size_t cut = 0; cut < bytes.size(); cut += 7) {
        Harness h(config);
        EXPECT_NE(h.agg().load(std::as_bytes(std::span(bytes.data(), cut))), std::nullopt) << cut;
        EXPECT_EQ(h.agg().groups(), 0u);
    }
    // A snapshot of other options is refused.
    Harness other(tumbling(20 * S, S, "count(), sum(v), p50(v), distinct(v), first(v), stddev(v)"));
    EXPECT_NE(other.agg().load(std::as_bytes(std::span(bytes.data(), bytes.size()))), std::nullopt);
}
