// mh-route up: runs a plan's processes, forwards their logs with each line prefixed by its
// process's name, restarts what crashes with exponential back-off, and drains in order.
//
// Draining. ZeroMQ inputs never see an end of stream, and an mh tool told to stop stops
// reading at once, so a stage may only be stopped once everything its upstream sent has
// arrived. The supervisor stops a group (a stage's replicas, or an edge's filter) when all
// of its upstream groups have ended and the group's mh_messages_in_total, summed over its
// replicas, equals the sum of their upstream's final mh_messages_out_total (each process
// writes its last counters to a file as it exits: MH_METRICS_FINAL). Where the counts
// cannot tell (a process died without its file, a tool that counts differently), the
// group is stopped once its input has been quiet for drain_quiet; in any case after
// drain_timeout. Sources end by themselves (a finite mh-gen), or on SIGTERM/SIGINT to
// mh-route; then the drain runs down the channel and mh-route exits.
#pragma once

#include "core/log.h"
#include "manifest/manifest.h"
#include "route/plan.h"

#include <string>

namespace mh::route {

struct SupervisorOptions {
    std::string runtime_dir;
    std::string manifest_dir;  // stdout paths are relative to it
    int64_t drain_timeout_ns = manifest::k_default_drain_timeout_ns;
    int64_t drain_quiet_ns = manifest::k_default_drain_quiet_ns;
};

// Runs until every process has ended. 0 when every stage ended cleanly, 69 when one failed
// for good (exited non-zero with restart = never, or while draining).
int supervise(const Plan& plan, const SupervisorOptions& options, Log& log);

// The state file in the runtime directory that `up` keeps and `status` reads: one line per
// process, tab separated, after a header line: name group state pid restarts metrics-port
// started-ns last-exit, and the messages in and out of its incarnations that have ended.
constexpr const char* k_state_file = "processes.tsv";
constexpr const char* k_pid_file = "up.pid";

}  // namespace mh::route
