// Protection against misbehaving clients: token buckets for per-gateway quotas, and
// refusals counted by reason on --metrics and logged once per gateway per interval.
#pragma once

#include "core/log.h"
#include "metrics/metrics.h"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace mh::endpoint {

// A bucket of `rate` tokens per second holding at most `burst`; rate 0 never refuses.
class TokenBucket {
public:
    void configure(double rate, double burst, int64_t now_ns);
    // Takes `tokens` when that many are there (all or nothing).
    bool take(double tokens, int64_t now_ns);
    // Seconds until `tokens` will be there (0 when now), for Retry-After; infinity when
    // `tokens` is more than the bucket holds.
    double wait_seconds(double tokens, int64_t now_ns) const;
    bool limited() const { return m_rate > 0; }

private:
    void refill(int64_t now_ns);
    double m_rate = 0;
    double m_burst = 0;
    double m_tokens = 0;
    int64_t m_last_ns = 0;
};

// Reasons, as the metrics label reads them.
namespace reason {
constexpr std::string_view auth = "auth";                       // bad, expired or foreign token; unknown gateway
constexpr std::string_view certificate = "certificate";         // TLS handshake failed (bad or foreign client cert)
constexpr std::string_view handshake_timeout = "handshake_timeout";
constexpr std::string_view idle_timeout = "idle_timeout";
constexpr std::string_view connections = "connections";         // the total cap
constexpr std::string_view gateway_connections = "gateway_connections";
constexpr std::string_view source = "source";                   // not a source this gateway may publish for
constexpr std::string_view oversized = "oversized";
constexpr std::string_view quota = "quota";
constexpr std::string_view malformed = "malformed";
constexpr std::string_view protocol = "protocol";               // bytes that are not the protocol
constexpr std::string_view commands = "commands";               // a command queue was full
}  // namespace reason

class Refusals {
public:
    Refusals(metrics::Registry& registry, Log& log, int64_t log_interval_ns);
    // Counts one (or `count`) refusal(s); logs "who: what" at most once per `who` per
    // interval, with the number suppressed since the last line.
    void refuse(std::string_view why, std::string_view who, std::string_view what, uint64_t count = 1);
    uint64_t total(std::string_view why);

private:
    struct Quiet {
        int64_t last_ns = 0;
        uint64_t suppressed = 0;
    };
    metrics::Registry& m_registry;
    Log& m_log;
    int64_t m_interval_ns;
    std::map<std::string, metrics::Counter*, std::less<>> m_counters;
    std::map<std::string, Quiet, std::less<>> m_quiet;
};

}  // namespace mh::endpoint
