#include "endpoint/limits.h"

#include "message/time.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace mh::endpoint {

void TokenBucket::configure(double rate, double burst, int64_t now_ns) {
    bool first = m_last_ns == 0;
    m_rate = rate;
    m_burst = std::max(burst, 1.0);
    if (first) m_tokens = m_burst;
    m_tokens = std::min(m_tokens, m_burst);
    m_last_ns = now_ns;
}

void TokenBucket::refill(int64_t now_ns) {
    if (now_ns > m_last_ns) {
        m_tokens = std::min(m_burst, m_tokens + m_rate * static_cast<double>(now_ns - m_last_ns) / 1e9);
        m_last_ns = now_ns;
    }
}

bool TokenBucket::take(double tokens, int64_t now_ns) {
    if (m_rate <= 0) return true;
    refill(now_ns);
    if (m_tokens < tokens) return false;
    m_tokens -= tokens;
    return true;
}

double TokenBucket::wait_seconds(double tokens, int64_t now_ns) const {
    if (m_rate <= 0) return 0;
    if (tokens > m_burst) return std::numeric_limits<double>::infinity();
    double have = std::min(m_burst, m_tokens + m_rate * static_cast<double>(std::max<int64_t>(0, now_ns - m_last_ns)) / 1e9);
    return have >= tokens ? 0 : (std::min(tokens, m_burst) - have) / m_rate;
}

namespace {
int64_t monotonic_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace

Refusals::Refusals(metrics::Registry& registry, Log& log, int64_t log_interval_ns)
    : m_registry(registry), m_log(log), m_interval_ns(log_interval_ns) {
    // Known reasons show on --metrics from the start, at 0, so a scrape can tell "none" from "unknown".
    for (auto why : {reason::auth, reason::certificate, reason::handshake_timeout, reason::idle_timeout,
                     reason::connections, reason::gateway_connections, reason::source, reason::oversized,
                     reason::quota, reason::malformed, reason::protocol, reason::commands})
        total(why);
}

uint64_t Refusals::total(std::string_view why) {
    auto it = m_counters.find(why);
    if (it == m_counters.end()) {
        auto& counter = m_registry.counter("mh_endpoint_refused_total", "Refusals, by reason",
                                           "reason=\"" + std::string(why) + "\"");
        m_counters.emplace(std::string(why), &counter);
        return counter.value();
    }
    return it->second->value();
}

void Refusals::refuse(std::string_view why, std::string_view who, std::string_view what, uint64_t count) {
    auto it = m_counters.find(why);
    if (it == m_counters.end()) {
        total(why);
        it = m_counters.find(why);
    }
    it->second->add(count);
    int64_t now = monotonic_ns();
    auto quiet = m_quiet.find(who);
    if (quiet == m_quiet.end()) quiet = m_quiet.emplace(std::string(who), Quiet{}).first;
    if (quiet->second.last_ns != 0 && now - quiet->second.last_ns < m_interval_ns) {
        quiet->second.suppressed += count;
        return;
    }
    if (quiet->second.suppressed)
        m_log.warn("{}: refused ({}): {} ({} more refusals not logged since the last line)", who, why, what,
                   quiet->second.suppressed);
    else
        m_log.warn("{}: refused ({}): {}", who, why, what);
    quiet->second = {now, 0};
    if (m_quiet.size() > 100'000) m_quiet.clear();  // bounded: peers are many, the memory is not
}

}  // namespace mh::endpoint
