// DDSketch and HyperLogLog against exact answers on generated data: the errors are
// measured, printed, and held to the bounds mh-aggregate promises (1 % and 2 %).
#include "aggregate/sketch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <unordered_set>
#include <vector>

using namespace mh::aggregate;

namespace {

double exact_quantile(std::vector<double> sorted, double q) {
    return sorted[static_cast<size_t>(std::floor(q * static_cast<double>(sorted.size() - 1)))];
}

double worst_relative_error(const std::vector<double>& values) {
    DDSketch sketch;
    for (double v : values) sketch.add(v);
    std::vector<double> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    double worst = 0;
    for (double q : {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999}) {
        double exact = exact_quantile(sorted, q);
        double got = sketch.quantile(q);
        double error = exact == 0 ? std::fabs(got) : std::fabs(got - exact) / std::fabs(exact);
        worst = std::max(worst, error);
    }
    return worst;
}

}  // namespace

TEST(DDSketch, QuantilesWithinOnePercentOnGeneratedData) {
    std::mt19937_64 rng(42);
    std::normal_distribution<double> temperature(21.5, 3.0);
    std::lognormal_distribution<double> latency(0.0, 2.0);
    std::uniform_real_distribution<double> signed_values(-1000, 1000);
    std::vector<double> a, b, c;
    for (int i = 0; i < 100000; ++i) {
        a.push_back(temperature(rng));
        b.push_back(latency(rng));
        c.push_back(signed_values(rng));
    }
    double ea = worst_relative_error(a), eb = worst_relative_error(b), ec = worst_relative_error(c);
    std::printf("DDSketch worst relative error over 10 quantiles: normal %.5f, lognormal %.5f, "
                "signed uniform %.5f\n", ea, eb, ec);
    EXPECT_LE(ea, 0.01);
    EXPECT_LE(eb, 0.01);
    EXPECT_LE(ec, 0.01);
}

TEST(DDSketch, EdgesAndReuse) {
    DDSketch sketch;
    sketch.add(5);
    EXPECT_EQ(sketch.quantile(0.5), 5);  // clamped to the exact min and max
    sketch.reset();
    EXPECT_EQ(sketch.count(), 0u);
    for (int v : {0, 0, 0, 10}) sketch.add(v);
    EXPECT_EQ(sketch.quantile(0.5), 0);
    EXPECT_EQ(sketch.quantile(1), 10);
    sketch.add(std::nan(""));
    EXPECT_EQ(sketch.count(), 4u);  // not a number: not counted
}

TEST(DDSketch, StateRoundTrip) {
    DDSketch sketch, restored;
    for (int i = -500; i < 1000; ++i) sketch.add(i * 0.37);
    std::string bytes;
    sketch.write(bytes);
    auto in = std::as_bytes(std::span(bytes.data(), bytes.size()));
    ASSERT_TRUE(restored.read(in));
    EXPECT_TRUE(in.empty());
    for (double q : {0.1, 0.5, 0.99}) EXPECT_EQ(sketch.quantile(q), restored.quantile(q));
    auto cut = std::as_bytes(std::span(bytes.data(), bytes.size() / 2));
    EXPECT_FALSE(restored.read(cut));
}

TEST(HyperLogLog, DistinctCountsWithinTwoPercent) {
    std::mt19937_64 rng(7);
    double worst = 0;
    for (uint64_t n : {10u, 1000u, 1025u, 5000u, 20000u, 50000u, 100000u, 300000u}) {
        HyperLogLog hll;
        for (uint64_t i = 0; i < n; ++i) {
            std::string key = "sensor-" + std::to_string(i);
            uint64_t h = hash_bytes(std::as_bytes(std::span(key.data(), key.size())));
            hll.add_hash(h);
            if (i % 3 == 0) hll.add_hash(h);  // repeats do not count
        }
        double error = std::fabs(static_cast<double>(hll.estimate()) - static_cast<double>(n)) /
                       static_cast<double>(n);
        std::printf("HyperLogLog n=%llu estimate=%llu error=%.5f\n",
                    static_cast<unsigned long long>(n),
                    static_cast<unsigned long long>(hll.estimate()), error);
        if (n <= HyperLogLog::k_exact_max) {
            EXPECT_EQ(hll.estimate(), n);
        }
        worst = std::max(worst, error);
    }
    EXPECT_LE(worst, 0.02);
}

TEST(HyperLogLog, ResetAndStateRoundTrip) {
    HyperLogLog hll, restored;
    for (uint64_t i = 1; i <= 5000; ++i) hll.add_hash(i * 0x9e3779b97f4a7c15ULL);
    std::string bytes;
    hll.write(bytes);
    auto in = std::as_bytes(std::span(bytes.data(), bytes.size()));
    ASSERT_TRUE(restored.read(in));
    EXPECT_EQ(restored.estimate(), hll.estimate());
    hll.reset();
    EXPECT_EQ(hll.estimate(), 0u);
    hll.add_hash(3);
    EXPECT_EQ(hll.estimate(), 1u);
}
