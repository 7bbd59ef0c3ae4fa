// Evaluations per second of the expression language on realistic telemetry, per message as
// mh-filter does it: bind the record to the message, then evaluate. Frames are decoded once
// beforehand, so the figure is the expression's cost alone (plus the bind), not the pipe's.
//
//   expr_bench [SECONDS]    (default 1: how long each expression is measured, at least)
#include "expr/expr.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <variant>
#include <vector>

namespace {

using namespace mh;
using Clock = std::chrono::steady_clock;

constexpr size_t k_messages = 4096;
constexpr int64_t k_start_ns = 1'767'225'600'000'000'000;  // 2026-01-01T00:00:00Z
constexpr int64_t k_interval_ns = 100'000'000;              // one message every 100 ms
constexpr int k_sources = 64;
constexpr int k_gateways = 16;

struct Case {
    const char* name;
    const char* text;
};

constexpr Case k_cases[] = {
    {"simple comparison", "temperature > 25"},
    {"compound with a regex", "temperature > 25 and humidity < 50 and source =~ \"^sensor-0000[1-4]\""},
    {"arithmetic (--set)", "round(temperature * 9 / 5 + 32, 1)"},
    {"in-list and like", "kind in [\"telemetry\", \"event\"] and gateway like \"gw-0*\""},
};

// Frames as mh-filter receives them: one Cap'n Proto message each, as flat words.
std::vector<kj::Array<capnp::word>> make_frames() {
    std::mt19937_64 random(1);
    std::normal_distribution<double> temperature(22.0, 6.0), humidity(50.0, 15.0), pressure(1013.0, 8.0);
    std::uniform_real_distribution<double> battery(5.0, 100.0), unit(0.0, 1.0);
    std::vector<kj::Array<capnp::word>> frames;
    frames.reserve(k_messages);
    for (size_t i = 0; i < k_messages; ++i) {
        capnp::MallocMessageBuilder builder(128);
        auto m = builder.initRoot<schema::Message>();
        int source = static_cast<int>(i % k_sources) + 1;
        int64_t time = k_start_ns + static_cast<int64_t>(i) * k_interval_ns;
        uint8_t id[16];
        for (int b = 0; b < 6; ++b) id[b] = static_cast<uint8_t>(time / 1'000'000 >> (8 * (5 - b)));
        for (int b = 6; b < 16; ++b) id[b] = static_cast<uint8_t>(random());
        id[6] = static_cast<uint8_t>(0x70 | (id[6] & 0x0f));
        id[8] = static_cast<uint8_t>(0x80 | (id[8] & 0x3f));
        m.setId(kj::arrayPtr(id, sizeof id));
        m.setTime(time);
        m.setIngested(time + 2'000'000);
        char name[32];
        std::snprintf(name, sizeof name, "sensor-%06d", source);
        m.setSource(name);
        std::snprintf(name, sizeof name, "gw-%02d", (source - 1) % k_gateways + 1);
        m.setGateway(name);
        double k = unit(random);
        m.setKind(k < 0.85 ? "telemetry" : k < 0.95 ? "event" : "alert");
        auto fields = m.initFields(5);
        const char* names[] = {"temperature", "humidity", "pressure", "battery"};
        double values[] = {temperature(random), humidity(random), pressure(random), battery(random)};
        for (int f = 0; f < 4; ++f) {
            fields[f].setName(names[f]);
            fields[f].getValue().setFloat(values[f]);
        }
        fields[4].setName("status");
        fields[4].getValue().setText(values[3] < 15 ? "low-battery" : k > 0.98 ? "door open" : "ok");
        frames.push_back(capnp::messageToFlatArray(builder));
    }
    return frames;
}

struct Result {
    double evals_per_second;
    double true_share;  // of the evaluations; negative when the result is not a boolean
};

Result measure(const expr::Expression& expression, const expr::Symbols& symbols,
               const std::vector<schema::Message::Reader>& messages, double seconds) {
    expr::Record record(symbols);
    expr::Scratch scratch;
    uint64_t trues = 0, booleans = 0;
    double sink = 0;
    auto pass = [&] {
        for (auto message : messages) {
            record.bind(message, k_start_ns);
            expr::Value value = expression.evaluate(record, scratch);
            if (value.type == expr::Type::boolean) {
                ++booleans;
                trues += value.boolean;
            } else {
                sink += value.as_double();
            }
        }
    };
    pass();  // warm: scratch, caches, branch predictors
    trues = booleans = 0;
    uint64_t passes = 0;
    auto start = Clock::now();
    std::chrono::duration<double> elapsed{};
    do {
        pass();
        ++passes;
        elapsed = Clock::now() - start;
    } while (elapsed.count() < seconds);
    if (sink == 42.4242) std::puts("");  // keeps the arithmetic from being optimized away
    double evaluations = static_cast<double>(passes * messages.size());
    return {evaluations / elapsed.count(),
            booleans ? static_cast<double>(trues) / static_cast<double>(booleans) : -1.0};
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
    if (seconds <= 0) {
        std::fprintf(stderr, "expr_bench: SECONDS must be a positive number of seconds\nusage: expr_bench [SECONDS]\n");
        return 64;
    }

    auto frames = make_frames();
    // Readers as the tools make them, without a traversal limit: they are read many times.
    capnp::ReaderOptions options;
    options.traversalLimitInWords = ~uint64_t{0};
    std::vector<std::unique_ptr<capnp::FlatArrayMessageReader>> readers;
    std::vector<schema::Message::Reader> messages;
    size_t words = 0;
    for (auto& frame : frames) {
        readers.push_back(std::make_unique<capnp::FlatArrayMessageReader>(frame.asPtr(), options));
        messages.push_back(readers.back()->getRoot<schema::Message>());
        words += frame.size();
    }
    std::printf("expr bench: %zu messages, %zu bytes per frame, at least %.1f s per expression\n", messages.size(),
                words * sizeof(capnp::word) / messages.size(), seconds);

    for (const auto& c : k_cases) {
        expr::Symbols symbols;
        auto compiled = expr::Expression::compile(c.text, symbols);
        if (auto* error = std::get_if<expr::CompileError>(&compiled)) {
            std::fprintf(stderr, "expr_bench: %s\n", error->render(c.text).c_str());
            return 70;
        }
        Result r = measure(std::get<expr::Expression>(compiled), symbols, messages, seconds);
        std::printf("expr  %-26s %-40s %7.1f M evals/s", c.name, c.text, r.evals_per_second / 1e6);
        if (r.true_share >= 0) std::printf("  (%.0f%% true)", r.true_share * 100);
        std::printf("\n");
    }
    return 0;
}
