// mh-aggregate as a tool: the options main() fills, and the loop that reads frames,
// feeds an Aggregator, writes its aggregates and alerts, passes barriers on in order,
// sends late messages aside and keeps timers (--clock wall, --idle, --state-every).
#pragma once

#include "aggregate/aggregator.h"
#include "cli/tool.h"

#include <string>
#include <vector>

namespace mh::aggregate {

struct AggregateOptions {
    cli::CommonOptions common;
    std::string window;    // tumbling size, or hopping size with --hop
    std::string hop;
    std::string session;   // inactivity gap
    std::string lateness = "5s";
    std::string clock = "event";
    std::string idle;      // wall time without input after which every window closes
    std::string late;      // output spec for late messages
    std::vector<std::string> by;
    std::string agg = "count()";
    std::vector<std::string> detect;
    uint64_t max_groups = k_default_max_groups;
    std::string state;     // directory of the LMDB snapshot
    std::string state_every = "30s";
    bool reset_state = false;
};

// Parses the durations and rules of `options` into an engine configuration; throws
// Error(usage) naming the option at fault.
AggregatorConfig make_config(const AggregateOptions& options);

int run(const AggregateOptions& options, cli::ToolContext& context);

}  // namespace mh::aggregate
