// mh-gen's simulator: what a fleet sends, how it is paced, and the anomalies it hides.
// Frames are decoded with plain Cap'n Proto, as any consumer of mh-gen would.
#include "gen/gen.h"

#include "message/time.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <thread>

namespace {

using mh::gen::GenOptions;
using mh::gen::GenSource;
using mh::wire::Next;
using mh::wire::Wait;

constexpr int64_t k_second = 1'000'000'000;

// One message as a test wants to look at it.
struct Decoded {
    std::vector<std::byte> bytes;
    mh::MessageId id{};
    int64_t time = 0;
    int64_t ingested = 0;
    std::string source, gateway, kind;
    std::vector<std::string> names;
    std::vector<double> values;  // ints as whole doubles
    std::vector<bool> is_int;
    std::string anomaly;         // the label, empty when the message has none

    double operator[](std::string_view name) const {
        auto it = std::find(names.begin(), names.end(), name);
        EXPECT_NE(it, names.end()) << "no field " << name;
        return it == names.end() ? NAN : values[static_cast<size_t>(it - names.begin())];
    }
};

Decoded decode(const mh::wire::Frame& frame) {
    Decoded d;
    d.bytes.assign(frame.bytes().begin(), frame.bytes().end());
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
    auto message = reader.getRoot<mh::schema::Message>();
    std::copy(message.getId().begin(), message.getId().end(), d.id.begin());
    d.time = message.getTime();
    d.ingested = message.getIngested();
    d.source = message.getSource();
    d.gateway = message.getGateway();
    d.kind = message.getKind();
    for (auto field : message.getFields()) {
        auto value = field.getValue();
        if (value.isText()) {
            EXPECT_EQ(std::string(field.getName()), "anomaly");
            d.anomaly = value.getText();
            continue;
        }
        d.names.push_back(field.getName());
        d.is_int.push_back(value.isInt());
        d.values.push_back(value.isInt() ? static_cast<double>(value.getInt()) : value.getFloat());
    }
    return d;
}

// Up to `n` messages (fewer when the source ends first).
std::vector<Decoded> take(GenSource& source, size_t n) {
    std::vector<Decoded> out;
    mh::wire::Frame frame;
    while (out.size() < n) {
        Next next = source.next(Wait::yes, frame);
        if (next == Next::end) break;
        EXPECT_EQ(next, Next::frame);
        out.push_back(decode(frame));
    }
    return out;
}

std::vector<Decoded> generate(const GenOptions& options, size_t n) {
    GenSource source(mh::gen::resolve(options));
    return take(source, n);
}

GenOptions seeded(uint64_t seed = 1) {
    GenOptions options;
    options.seed = seed;
    return options;
}

std::string usage_error(const GenOptions& options) {
    try {
        mh::gen::resolve(options);
    } catch (const mh::Error& e) {
        EXPECT_EQ(e.code(), mh::ExitCode::usage);
        return e.what();
    }
    ADD_FAILURE() << "options were accepted";
    return {};
}

// ---------------------------------------------------------------------------------
// Determinism, counts, names and event time.

TEST(GenSource, SameSeedGivesByteIdenticalFrames) {
    GenOptions options = seeded(42);
    options.anomalies = 0.05;
    options.label_anomalies = true;
    auto first = generate(options, 5000);
    auto second = generate(options, 5000);
    ASSERT_EQ(first.size(), 5000u);
    for (size_t i = 0; i < first.size(); ++i) ASSERT_EQ(first[i].bytes, second[i].bytes) << "message " << i;

    auto other = generate(seeded(43), 10);
    EXPECT_NE(first[0].values, other[0].values);
}

TEST(GenSource, SeededRunsStartAtTheNewYear2026) {
    auto messages = generate(seeded(), 1);
    EXPECT_EQ(mh::format_rfc3339(messages[0].time), "2026-01-01T00:00:00Z");

    GenOptions unseeded;  // starts now
    auto now = generate(unseeded, 1);
    EXPECT_LT(std::llabs(now[0].time - mh::wall_clock_ns()), 60 * k_second);
}

TEST(GenSource, StopsAfterCount) {
    GenOptions options = seeded();
    options.count = 123;
    GenSource source(mh::gen::resolve(options));
    EXPECT_EQ(take(source, 1000).size(), 123u);
    mh::wire::Frame frame;
    EXPECT_EQ(source.next(Wait::no, frame), Next::end);
    EXPECT_EQ(source.messages(), 123u);
}

TEST(GenSource, SourcesReportRoundRobinSpreadEvenlyOverGateways) {
    GenOptions options = seeded();
    options.sources = 10;
    options.gateways = 3;
    auto messages = generate(options, 100);

    for (size_t i = 0; i < messages.size(); ++i)
        EXPECT_EQ(messages[i].source, mh::gen::source_name(static_cast<uint32_t>(i % 10), 10));
    EXPECT_EQ(messages[0].source, "sensor-000001");
    EXPECT_EQ(messages[9].source, "sensor-000010");

    std::map<std::string, std::string> gateway_of;           // each source stays with one gateway
    std::map<std::string, std::set<std::string>> sources_of;  // and gateways share the sources
    for (const auto& m : messages) {
        auto [it, inserted] = gateway_of.emplace(m.source, m.gateway);
        EXPECT_EQ(it->second, m.gateway) << m.source;
        sources_of[m.gateway].insert(m.source);
        EXPECT_EQ(m.kind, "telemetry");
    }
    ASSERT_EQ(sources_of.size(), 3u);
    EXPECT_EQ(sources_of["gw-01"].size(), 4u);
    EXPECT_EQ(sources_of["gw-02"].size(), 3u);
    EXPECT_EQ(sources_of["gw-03"].size(), 3u);
}

TEST(GenSource, NamesWidenForLargeFleets) {
    EXPECT_EQ(mh::gen::source_name(0, 1'000'000), "sensor-0000001");
    EXPECT_EQ(mh::gen::source_name(999'999, 1'000'000), "sensor-1000000");
    EXPECT_EQ(mh::gen::gateway_name(4, 120), "gw-005");
    EXPECT_EQ(mh::gen::gateway_of(999, 1000, 7), 6u);
}

TEST(GenSource, EventTimeSpacesReportsByIntervalOverSources) {
    GenOptions options = seeded();
    options.sources = 4;
    options.start = "2026-03-01T12:00:00Z";
    options.interval = "1s";
    auto messages = generate(options, 400);
    const int64_t start = *mh::parse_rfc3339("2026-03-01T12:00:00Z");
    for (size_t i = 0; i < messages.size(); ++i) {
        EXPECT_EQ(messages[i].time, start + static_cast<int64_t>(i) * 250'000'000) << i;
        EXPECT_EQ(messages[i].ingested, messages[i].time);  // mh-gen stands in for the endpoint
    }
    // Ids are UUIDv7 from the event time: version 7, and they sort like the messages.
    for (size_t i = 1; i < messages.size(); ++i) {
        EXPECT_EQ(messages[i].id[6] >> 4, 7);
        EXPECT_LT(messages[i - 1].id, messages[i].id);
    }
}

TEST(GenConfig, IntervalDefaultsToSourcesOverRate) {
    GenOptions options = seeded();
    options.sources = 50;
    options.rate = 500;
    EXPECT_EQ(mh::gen::resolve(options).fleet.interval_ns, 100'000'000);  // each source every 0.1 s
    options.rate = 0;
    EXPECT_EQ(mh::gen::resolve(options).fleet.interval_ns, k_second);
    options.start = "1767225600000000000";
    EXPECT_EQ(mh::gen::resolve(options).fleet.start_ns, mh::gen::k_seeded_start_ns);
}

// ---------------------------------------------------------------------------------
// Fields.

TEST(GenFieldSpec, ParsesEveryDistribution) {
    using mh::gen::Dist;
    using mh::gen::FieldSpec;
    using mh::gen::parse_field_spec;
    EXPECT_EQ(parse_field_spec("rpm=normal(1500,40)"), (FieldSpec{"rpm", Dist::normal, 1500, 40}));
    EXPECT_EQ(parse_field_spec("load=uniform(0, 1)"), (FieldSpec{"load", Dist::uniform, 0, 1}));
    EXPECT_EQ(parse_field_spec("level=walk(50,0.5)"), (FieldSpec{"level", Dist::walk, 50, 0.5}));
    EXPECT_EQ(parse_field_spec("site.zone=const(-3e2)"), (FieldSpec{"site.zone", Dist::constant, -300, 0}));
    EXPECT_EQ(parse_field_spec("door=int(0,1)"), (FieldSpec{"door", Dist::integer, 0, 1}));
    EXPECT_EQ(mh::gen::describe(parse_field_spec("x=normal(1.5,2)")), "normal(1.5,2)");
}

TEST(GenFieldSpec, RejectsBadSpecsSayingWhatWasExpected) {
    struct Case {
        const char* spec;
        const char* expected;
    };
    const Case cases[] = {
        {"rpm", "expected NAME=DIST"},
        {"=normal(1,2)", "field name"},
        {"rpm=gauss(1,2)", "unknown distribution 'gauss'"},
        {"rpm=normal(1)", "expected normal(mean,stddev)"},
        {"rpm=normal(1,2,3)", "too many numbers"},
        {"rpm=normal(1,x)", "'x' is not a number"},
        {"rpm=normal(1,-2)", "must not be negative"},
        {"rpm=uniform(5,1)", "lo must not be greater than hi"},
        {"rpm=int(0,1.5)", "whole numbers"},
        {"rpm=const()", "expected const(v)"},
        {"rpm=normal(1,2", "expected a distribution"},
    };
    for (const auto& c : cases) {
        try {
            mh::gen::parse_field_spec(c.spec);
            ADD_FAILURE() << c.spec << " was accepted";
        } catch (const mh::Error& e) {
            EXPECT_EQ(e.code(), mh::ExitCode::usage);
            EXPECT_NE(std::string(e.what()).find(c.spec), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what();
        }
    }
}

TEST(GenSource, DefaultFieldsLookLikeRealSensors) {
    GenOptions options = seeded(7);
    options.sources = 20;
    auto messages = generate(options, 20 * 2000);

    std::map<std::string, std::vector<const Decoded*>> by_source;
    for (const auto& m : messages) {
        ASSERT_EQ(m.names, (std::vector<std::string>{"temperature", "humidity", "pressure", "battery"}));
        EXPECT_EQ(m.is_int, std::vector<bool>(4, false));
        EXPECT_TRUE(m.anomaly.empty());
        EXPECT_GT(m["temperature"], 14);
        EXPECT_LT(m["temperature"], 30);
        EXPECT_GE(m["humidity"], 0);
        EXPECT_LE(m["humidity"], 100);
        EXPECT_GT(m["pressure"], 990);
        EXPECT_LT(m["pressure"], 1040);
        EXPECT_GT(m["battery"], 0);
        EXPECT_LE(m["battery"], 100);
        by_source[m.source].push_back(&m);
    }
    ASSERT_EQ(by_source.size(), 20u);

    std::vector<double> mean_temperature;
    for (const auto& [source, reports] : by_source) {
        double sum = 0;
        for (const auto* m : reports) sum += (*m)["temperature"];
        mean_temperature.push_back(sum / static_cast<double>(reports.size()));
        // Noise around the baseline is about 0.5 °C from one report to the next.
        double sum_sq_diff = 0;
        for (size_t i = 1; i < reports.size(); ++i)
            sum_sq_diff += std::pow((*reports[i])["temperature"] - (*reports[i - 1])["temperature"], 2);
        EXPECT_NEAR(std::sqrt(sum_sq_diff / static_cast<double>(reports.size() - 1) / 2), 0.5, 0.1) << source;
        // Batteries only run down (2000 reports are far from a swap).
        for (size_t i = 1; i < reports.size(); ++i) EXPECT_LE((*reports[i])["battery"], (*reports[i - 1])["battery"]);
        EXPECT_LT(reports.back()->operator[]("battery"), reports.front()->operator[]("battery"));
    }
    // Each source has its own baseline.
    auto [lo, hi] = std::minmax_element(mean_temperature.begin(), mean_temperature.end());
    EXPECT_GT(*lo, 16);
    EXPECT_LT(*hi, 28);
    EXPECT_GT(*hi - *lo, 2);
}

TEST(GenSource, FieldsKeepsSomeDefaultsAndFieldAddsOthers) {
    GenOptions options = seeded();
    options.fields = {"battery", "temperature"};
    EXPECT_EQ(generate(options, 1)[0].names, (std::vector<std::string>{"battery", "temperature"}));

    options.fields.clear();
    options.field_specs = {"door=int(0,1)", "setpoint=const(4.5)"};
    EXPECT_EQ(generate(options, 1)[0].names, (std::vector<std::string>{"door", "setpoint"}));

    options.fields = {"temperature"};
    EXPECT_EQ(generate(options, 1)[0].names, (std::vector<std::string>{"temperature", "door", "setpoint"}));
}

TEST(GenSource, CustomDistributionsKeepTheirShape) {
    GenOptions options = seeded(3);
    options.sources = 5;
    options.field_specs = {"n=normal(100,4)", "u=uniform(-1,1)", "w=walk(50,0.5)", "c=const(7.25)", "i=int(-3,3)"};
    auto messages = generate(options, 50'000);

    double sum = 0, sum_sq = 0;
    std::set<double> ints;
    std::map<std::string, double> last_walk;
    for (const auto& m : messages) {
        sum += m["n"];
        sum_sq += m["n"] * m["n"];
        EXPECT_GE(m["u"], -1);
        EXPECT_LT(m["u"], 1);
        EXPECT_EQ(m["c"], 7.25);
        EXPECT_TRUE(m.is_int[4]);
        ints.insert(m["i"]);
        if (auto it = last_walk.find(m.source); it != last_walk.end()) {
            EXPECT_LT(std::fabs(m["w"] - it->second), 0.5 * 7) << "a walk moves by small steps";
        } else {
            EXPECT_NEAR(m["w"], 50, 0.5 * 7);
        }
        last_walk[m.source] = m["w"];
    }
    const double n = static_cast<double>(messages.size());
    EXPECT_NEAR(sum / n, 100, 0.1);
    EXPECT_NEAR(std::sqrt(sum_sq / n - (sum / n) * (sum / n)), 4, 0.1);
    EXPECT_EQ(ints, (std::set<double>{-3, -2, -1, 0, 1, 2, 3}));
}

TEST(GenRandom, NormalVariatesHaveUnitVarianceAndRealTails) {
    mh::gen::Rng rng(11);
    constexpr int k_draws = 2'000'000;
    double sum = 0, sum_sq = 0;
    int beyond_3 = 0, beyond_4 = 0;
    for (int i = 0; i < k_draws; ++i) {
        double z = rng.normal();
        sum += z;
        sum_sq += z * z;
        beyond_3 += std::fabs(z) > 3;
        beyond_4 += std::fabs(z) > 4;
    }
    EXPECT_NEAR(sum / k_draws, 0, 0.005);
    EXPECT_NEAR(sum_sq / k_draws, 1, 0.01);
    EXPECT_NEAR(beyond_3, 0.0027 * k_draws, 0.0027 * k_draws * 0.1);  // 5400 expected
    EXPECT_GT(beyond_4, 60);                                          // 127 expected
    EXPECT_NEAR(mh::gen::inverse_normal_cdf(0.975), 1.959964, 1e-6);
}

// ---------------------------------------------------------------------------------
// Anomalies.

GenOptions with_anomalies(std::vector<std::string> kinds, double rate) {
    GenOptions options = seeded(5);
    options.sources = 10;
    options.anomalies = rate;
    options.anomaly_kinds = std::move(kinds);
    options.label_anomalies = true;
    return options;
}

TEST(GenAnomalies, SpikesDepartEightToFifteenSigmasOnTheFirstField) {
    GenOptions options = with_anomalies({"spike"}, 0.01);
    options.field_specs = {"x=normal(100,2)", "y=const(1)"};
    auto messages = generate(options, 50'000);
    int spikes = 0;
    for (const auto& m : messages) {
        const double sigmas = std::fabs(m["x"] - 100) / 2;
        if (m.anomaly == "spike") {
            ++spikes;
            EXPECT_GE(sigmas, mh::gen::k_spike_min_sigmas);
            EXPECT_LE(sigmas, mh::gen::k_spike_max_sigmas);
        } else {
            EXPECT_TRUE(m.anomaly.empty());
            EXPECT_LT(sigmas, 7);
        }
        EXPECT_EQ(m["y"], 1);  // only the first field spikes
    }
    EXPECT_NEAR(spikes, 500, 100);  // the rate is per message
}

TEST(GenAnomalies, TemperatureSpikesStandOutFromTheirNeighbours) {
    auto messages = generate(with_anomalies({"spike"}, 0.02), 20'000);
    int spikes = 0;
    for (size_t i = 10; i + 10 < messages.size(); ++i) {
        if (messages[i].anomaly != "spike") continue;
        if (!messages[i - 10].anomaly.empty() || !messages[i + 10].anomaly.empty()) continue;
        ++spikes;
        // The source's reports before and after (round-robin over 10 sources).
        const double around = (messages[i - 10]["temperature"] + messages[i + 10]["temperature"]) / 2;
        EXPECT_GT(std::fabs(messages[i]["temperature"] - around), 8 * 0.5 - 2.5);
        EXPECT_LT(std::fabs(messages[i]["temperature"] - around), 15 * 0.5 + 2.5);
    }
    EXPECT_GT(spikes, 200);
}

TEST(GenAnomalies, StuckSourcesRepeatTheirLastValuesExactly) {
    GenOptions options = with_anomalies({"stuck"}, 0.002);
    options.episode = 5;
    options.field_specs = {"x=normal(0,1)", "w=walk(0,1)"};  // continuous: no repeats by chance
    auto messages = generate(options, 50'000);

    std::map<std::string, const Decoded*> previous;
    std::map<std::string, int> run;  // stuck reports in a row, per source
    int episodes = 0;
    for (const auto& m : messages) {
        const Decoded* before = previous[m.source];
        if (m.anomaly == "stuck") {
            ASSERT_NE(before, nullptr) << "an episode needs a last value";
            EXPECT_EQ(m.values, before->values);
            if (run[m.source]++ == 0) ++episodes;
        } else {
            if (run[m.source] > 0) {
                EXPECT_EQ(run[m.source], 5) << m.source;
            }
            run[m.source] = 0;
            if (before) {
                EXPECT_NE(m.values, before->values);
            }
        }
        previous[m.source] = &m;
    }
    EXPECT_GT(episodes, 50);
}

TEST(GenAnomalies, SilentSourcesSkipReportsWhileTimeGoesOn) {
    GenOptions options = with_anomalies({"silent"}, 0.002);
    options.episode = 7;
    options.interval = "1s";
    auto messages = generate(options, 50'000);

    std::map<std::string, int64_t> last_time;
    int silences = 0;
    for (const auto& m : messages) {
        if (auto it = last_time.find(m.source); it != last_time.end()) {
            const int64_t gap = m.time - it->second;
            if (m.anomaly == "silent-end") {
                ++silences;
                EXPECT_EQ(gap, (7 + 1) * k_second) << m.source;
            } else {
                EXPECT_EQ(gap, k_second) << m.source;
            }
        }
        last_time[m.source] = m.time;
    }
    EXPECT_GT(silences, 50);
}

TEST(GenAnomalies, WithoutLabelsNothingIsMarked) {
    GenOptions options = with_anomalies({"spike", "stuck", "silent"}, 0.05);
    options.label_anomalies = false;
    for (const auto& m : generate(options, 5000)) EXPECT_TRUE(m.anomaly.empty());
}

// ---------------------------------------------------------------------------------
// Options.

TEST(GenConfig, RejectsOutOfRangeOptionsNamingThem) {
    auto bad = [](auto change) {
        GenOptions options = seeded();
        change(options);
        return usage_error(options);
    };
    EXPECT_NE(bad([](GenOptions& o) { o.sources = 0; }).find("--sources"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.gateways = 11; }).find("--gateways"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.rate = -1; }).find("--rate"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.anomalies = 1.5; }).find("--anomalies"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.episode = 0; }).find("--episode"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.duration = "soon"; }).find("--duration 'soon'"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.interval = "0s"; }).find("--interval"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.start = "yesterday"; }).find("--start 'yesterday'"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.anomaly_kinds = {"drift"}; }).find("'drift'"), std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.fields = {"speed"}; }).find("'speed' is not a default field"),
              std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) { o.field_specs = {"a=const(1)", "a=const(2)"}; }).find("given twice"),
              std::string::npos);
    EXPECT_NE(bad([](GenOptions& o) {
                  o.field_specs = {"anomaly=const(1)"};
                  o.label_anomalies = true;
              }).find("clashes"),
              std::string::npos);
}

// ---------------------------------------------------------------------------------
// Pacing and stopping.

TEST(GenPacing, PacedSourceIsIdleUntilTheNextMessageIsDue) {
    GenOptions options = seeded();
    options.rate = 20;  // one message every 50 ms
    GenSource source(mh::gen::resolve(options));
    mh::wire::Frame frame;
    EXPECT_EQ(source.next(Wait::no, frame), Next::frame);  // the first is due at once
    EXPECT_EQ(source.next(Wait::no, frame), Next::idle);   // the next one is 50 ms away
    auto before = std::chrono::steady_clock::now();
    EXPECT_EQ(source.next(Wait::yes, frame), Next::frame);  // sleeps until it is due
    auto waited = std::chrono::steady_clock::now() - before;
    EXPECT_GT(waited, std::chrono::milliseconds(30));
    EXPECT_LT(waited, std::chrono::milliseconds(500));
}

TEST(GenPacing, PacedRunKeepsItsRateForItsDuration) {
    GenOptions options = seeded();
    options.rate = 2000;
    options.duration = "300ms";
    GenSource source(mh::gen::resolve(options));
    mh::wire::Frame frame;
    uint64_t frames = 0, idles = 0;
    auto start = std::chrono::steady_clock::now();
    for (;;) {  // as relay::pump drives it
        Next next = source.next(Wait::no, frame);
        if (next == Next::idle) {
            ++idles;
            next = source.next(Wait::yes, frame);
        }
        if (next == Next::end) break;
        ++frames;
    }
    auto elapsed = std::chrono::steady_clock::now() - start;
    // 600 are due before the deadline; a busy machine may reach it with a few still owed.
    EXPECT_LE(frames, 600u);
    EXPECT_GT(frames, 450u);
    EXPECT_GT(idles, 10u);  // small batches, each followed by a flush
    EXPECT_LT(idles, 600u);
    EXPECT_GT(elapsed, std::chrono::milliseconds(250));
    EXPECT_LT(elapsed, std::chrono::milliseconds(1000));
}

TEST(GenPacing, DurationEndsAnUnpacedRun) {
    GenOptions options = seeded();
    options.duration = "50ms";
    GenSource source(mh::gen::resolve(options));
    mh::wire::Frame frame;
    auto start = std::chrono::steady_clock::now();
    while (source.next(Wait::no, frame) == Next::frame) {
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_GT(source.messages(), 1000u);
}

TEST(GenPacing, StopFlagEndsTheRun) {
    mh::StopFlag stop{false};
    GenOptions options = seeded();
    options.rate = 1;  // the next message would be a second away
    GenSource source(mh::gen::resolve(options), &stop);
    mh::wire::Frame frame;
    EXPECT_EQ(source.next(Wait::no, frame), Next::frame);
    std::thread stopper([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        stop = true;
    });
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(source.next(Wait::yes, frame), Next::end);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
    stopper.join();
}

// ---------------------------------------------------------------------------------
// The whole tool minus main(): every output gets every frame.

std::vector<Decoded> read_frames(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    std::vector<capnp::word> words(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.data(), bytes.data(), words.size() * sizeof(capnp::word));
    std::vector<Decoded> out;
    std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(words.data()), bytes.size());
    while (!rest.empty()) {
        auto scan = mh::wire::scan_frame(rest, {});
        if (scan.status != mh::wire::ScanStatus::complete) {
            ADD_FAILURE() << "garbled output";
            break;
        }
        out.push_back(decode(mh::wire::Frame{reinterpret_cast<const capnp::word*>(rest.data()),
                                             scan.frame_bytes / sizeof(capnp::word)}));
        rest = rest.subspan(scan.frame_bytes);
    }
    return out;
}

TEST(GenRun, WritesCountFramesToEveryOutput) {
    const std::string a = ::testing::TempDir() + "gen_a.frames";
    const std::string b = ::testing::TempDir() + "gen_b.frames";
    GenOptions options = seeded(9);
    options.count = 1000;
    options.common.out = {a, b};
    {
        mh::cli::ToolContext context("mh-gen", options.common);
        EXPECT_EQ(mh::gen::run(options, context), 0);
    }
    auto first = read_frames(a);
    auto second = read_frames(b);
    ASSERT_EQ(first.size(), 1000u);
    ASSERT_EQ(second.size(), 1000u);
    auto expected = generate(options, 1000);
    for (size_t i = 0; i < first.size(); ++i) {
        EXPECT_EQ(first[i].bytes, expected[i].bytes);
        EXPECT_EQ(second[i].bytes, expected[i].bytes);
    }
    std::remove(a.c_str());
    std::remove(b.c_str());
}

}  // namespace
