// Reading a stage's counters: from its --metrics server while it runs, or from the file
// it writes as it ends (MH_METRICS_FINAL, see cli/tool.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mh::route {

struct FlowCounts {
    uint64_t in = 0;       // mh_messages_in_total
    uint64_t out = 0;      // mh_messages_out_total
    uint64_t dropped = 0;  // every mh_dropped_total{reason=...} summed
    uint64_t errors = 0;   // mh_errors_total
};

// Prometheus text format; lines that are not one of the flow counters are ignored.
FlowCounts parse_flow_counts(std::string_view text);

// GET /metrics from 127.0.0.1:PORT, within `timeout_ms`; nullopt when it cannot be read.
std::optional<std::string> fetch_metrics(int port, int timeout_ms);
std::optional<FlowCounts> scrape(int port, int timeout_ms);

std::optional<FlowCounts> read_final_counts(const std::string& path);

}  // namespace mh::route
