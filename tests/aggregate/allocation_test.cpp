// The steady state allocates nothing: once every group has had its windows, further
// messages (and the windows they close) reuse the groups' panes, sketches and buffers.
#include "aggregate/aggregator.h"
#include "message/scratch_builder.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_allocations{0};
}

// Counts every allocation of this test binary.
void* operator new(size_t size) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

using namespace mh;
using namespace mh::aggregate;

TEST(Allocation, SteadyStateAllocatesNothing) {
    constexpr int64_t S = 1'000'000'000;
    AggregatorConfig config;
    config.size_ns = S;
    config.lateness_ns = 0;
    config.keys = parse_keys({"source"});
    config.aggs = parse_aggregates("count(), mean(v), max(v), p99(v), distinct(v), last(v), stddev(v)");
    config.detects.push_back(parse_detect("zscore(v) > 4"));
    config.detects.push_back(parse_detect("silence(10s)"));
    Log log("test");
    Aggregator aggregator(config, {}, log);

    ScratchBuilder builder;
    std::vector<std::byte> bytes;
    bytes.reserve(1 << 16);
    const std::string sources[] = {"sensor-000001", "sensor-000002", "sensor-000003", "sensor-000004"};
    auto send = [&](int i) {
        auto message = builder.start();
        const std::string& source = sources[i % 4];
        message.setSource(capnp::Text::Reader(source.data(), source.size()));
        message.setTime(static_cast<int64_t>(i) * S / 8);
        auto fields = message.initFields(1);
        fields[0].setName("v");
        fields[0].getValue().setFloat(20 + (i % 13) * 0.1);
        bytes.clear();
        wire::append_frame(builder.builder(), bytes);
        wire::Frame frame{reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / 8};
        aggregator.process(frame, 0);
        aggregator.output();
        aggregator.take_output();
    };
    int i = 0;
    for (; i < 4000; ++i) send(i);  // warm: groups, panes, buffers, heap
    uint64_t before = g_allocations.load();
    for (; i < 40000; ++i) send(i);
    EXPECT_EQ(g_allocations.load() - before, 0u);
    EXPECT_GT(aggregator.stats().windows, 4000u);
}
