// gateway_bench: what the endpoint's identity layer costs (lib/gateway): loading a registry
// of N gateways (the work of a SIGHUP reload), token checks (once per MQTT CONNECT or HTTP
// request), fingerprint lookups (once per mutual-TLS connection) and source authorization
// (once per message).
//
//   build/bench/gateway_bench [GATEWAYS] [SECONDS]     (defaults 10000 and 1)
#include "gateway/registry.h"
#include "gateway/token.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using namespace mh::gateway;
using Clock = std::chrono::steady_clock;

constexpr int64_t k_now_s = 1'800'000'000;

// Calls `step(i)` for at least `seconds`, in batches; returns calls per second.
template <typename Step>
double rate(double seconds, Step&& step) {
    size_t calls = 0;
    auto start = Clock::now();
    std::chrono::duration<double> elapsed{};
    do {
        for (int i = 0; i < 1024; ++i) step(calls++);
        elapsed = Clock::now() - start;
    } while (elapsed.count() < seconds);
    return calls / elapsed.count();
}

std::string gateway_id(size_t i) { return fmt::format("gw-{:06}", i); }

}  // namespace

int main(int argc, char** argv) {
    size_t gateways = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10000;
    double seconds = argc > 2 ? std::strtod(argv[2], nullptr) : 1.0;
    if (gateways == 0) gateways = 1;

    // Every gateway has a key and a fingerprint, and three patterns as in a real fleet.
    std::vector<std::vector<uint8_t>> keys(gateways);
    std::vector<Sha256> fingerprints(gateways);
    std::string text = "[defaults]\nmessages_per_second = 1000\n";
    for (size_t i = 0; i < gateways; ++i) {
        keys[i].resize(32);
        for (size_t b = 0; b < 32; ++b) keys[i][b] = static_cast<uint8_t>(i * 31 + b * 7);
        for (size_t b = 0; b < 32; ++b) fingerprints[i][b] = static_cast<uint8_t>(i >> (b % 4 * 8)) ^ b;
        text += fmt::format("[gateway.{}]\ntoken_key = \"{}\"\ncert_sha256 = \"{}\"\n"
                            "sources = [\"site-{}/*\", \"sensor-{:06}-*\", \"pump-{}-[0-9]*\"]\n",
                            gateway_id(i), to_hex(keys[i]), fingerprint_text(fingerprints[i]), i, i, i);
    }

    auto start = Clock::now();
    auto registry = Registry::parse(text, "bench.toml");
    std::chrono::duration<double> load = Clock::now() - start;
    fmt::print("gateway  load registry ({} gateways, {:.1f} MB)   {:8.1f} ms\n", registry->size(),
               text.size() / 1e6, load.count() * 1e3);

    std::vector<std::string> tokens(gateways);
    for (size_t i = 0; i < gateways; ++i) tokens[i] = issue_token(keys[i], gateway_id(i), k_now_s + 3600);
    std::vector<std::string> ids(gateways);
    for (size_t i = 0; i < gateways; ++i) ids[i] = gateway_id(i);

    size_t refused = 0;
    double tokens_per_s = rate(seconds, [&](size_t i) {
        refused += registry->check_token(ids[i % gateways], tokens[i % gateways], k_now_s) != TokenCheck::ok;
    });
    fmt::print("gateway  check_token                               {:8.2f} M/s\n", tokens_per_s / 1e6);

    double fingerprints_per_s = rate(seconds, [&](size_t i) {
        refused += registry->find_by_fingerprint(fingerprints[i % gateways]) == nullptr;
    });
    fmt::print("gateway  find_by_fingerprint                       {:8.2f} M/s\n", fingerprints_per_s / 1e6);

    // The endpoint holds the Gateway of a connection: per message only its patterns are matched.
    std::vector<std::string> sources = {"site-7/pump/3", "sensor-000007-a", "pump-7-12", "elsewhere/1"};
    const Gateway* gateway = registry->find(gateway_id(7 % gateways));
    size_t allowed = 0;
    double publish_per_s = rate(seconds, [&](size_t i) { allowed += gateway->may_publish(sources[i & 3]); });
    fmt::print("gateway  may_publish (3 patterns, 3 of 4 allowed)  {:8.2f} M/s\n", publish_per_s / 1e6);

    if (refused != 0 || allowed == 0) {
        fmt::print(stderr, "gateway_bench: {} lookups failed, {} allowed: the benchmark is broken\n", refused, allowed);
        return 1;
    }
    return 0;
}
