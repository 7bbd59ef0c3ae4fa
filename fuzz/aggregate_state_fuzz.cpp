// Fuzzes what mh-aggregate reads from outside: --agg, --by and --detect texts, and --state
// snapshots (raw bytes, and valid snapshots with one byte changed). A refusal must be a
// usage Error (options) or an explained load failure leaving the engine empty; whatever
// loads must then run: more messages, and every window closed.
#include "aggregate/aggregator.h"
#include "core/error.h"
#include "message/scratch_builder.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace mh;
using namespace mh::aggregate;

constexpr int64_t S = 1'000'000'000;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "aggregate_state_fuzz: %s\n", what);
    std::abort();
}

AggregatorConfig config_for(uint8_t selector) {
    AggregatorConfig config;
    config.window = static_cast<WindowKind>(selector % 3);
    config.size_ns = 10 * S;
    config.hop_ns = 5 * S;
    config.gap_ns = 3 * S;
    config.lateness_ns = S;
    config.keys = parse_keys({"source"});
    config.aggs = parse_aggregates("count(), sum(v), min(v), p90(v), distinct(v), first(v), rate(v), stddev(v)");
    config.detects.push_back(parse_detect("zscore(v) > 3"));
    config.detects.push_back(parse_detect("stuck(v, 2s)"));
    config.detects.push_back(parse_detect("silence(4s)"));
    return config;
}

void feed(Aggregator& aggregator, ScratchBuilder& builder, std::string_view data) {
    std::vector<std::byte> bytes;
    for (size_t i = 0; i + 2 <= data.size() && i < 64; i += 2) {
        auto message = builder.start();
        char source[] = {'s', static_cast<char>('a' + (data[i] & 3))};
        message.setSource(capnp::Text::Reader(source, 2));
        message.setTime(static_cast<int64_t>(static_cast<uint8_t>(data[i])) * S / 4);
        auto fields = message.initFields(1);
        fields[0].setName("v");
        fields[0].getValue().setFloat(static_cast<int8_t>(data[i + 1]));
        bytes.clear();
        wire::append_frame(builder.builder(), bytes);
        aggregator.process({reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / 8}, 0);
        aggregator.take_output();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t mode = data[0] % 3, selector = data[1];
    std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
    Log log("fuzz", LogLevel::error);
    if (mode == 0) {  // option texts
        try {
            parse_aggregates(rest);
        } catch (const Error& e) {
            if (e.code() != ExitCode::usage) fail("--agg refused without a usage error");
        }
        try {
            parse_detect(rest);
        } catch (const Error& e) {
            if (e.code() != ExitCode::usage) fail("--detect refused without a usage error");
        }
        return 0;
    }
    Aggregator aggregator(config_for(selector), {}, log);
    ScratchBuilder builder;
    std::string snapshot;
    if (mode == 1) {
        snapshot.assign(rest);
    } else {  // a valid snapshot of input-driven messages, with one byte changed
        Aggregator source(config_for(selector), {}, log);
        feed(source, builder, rest);
        source.save(snapshot);
        if (!snapshot.empty() && rest.size() >= 3) {
            size_t at = (static_cast<uint8_t>(rest[0]) | static_cast<uint8_t>(rest[1]) << 8) % snapshot.size();
            snapshot[at] = static_cast<char>(snapshot[at] ^ rest[2]);
        }
    }
    auto error = aggregator.load(std::as_bytes(std::span(snapshot.data(), snapshot.size())));
    if (error && (aggregator.groups() != 0 || aggregator.open_windows() != 0)) fail("a failed load left state behind");
    feed(aggregator, builder, rest);
    aggregator.close_all(0);
    if (aggregator.open_windows() != 0) fail("windows open after close_all");
    return 0;
}
