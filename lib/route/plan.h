// The processes a channel becomes, and their wiring. Every stage replica binds its own
// input socket; each upstream process connects one PUSH output per reading stage to all of
// that stage's replicas (ZeroMQ shares the load among them, and a message queued for a
// replica that restarts waits on the sender's side). A conditional edge gets an mh-filter
// process of its own between the two stages. The same plan feeds `up` (ipc sockets in the
// runtime directory) and `units` (ipc on one host, tcp across hosts).
#pragma once

#include "manifest/manifest.h"

#include <functional>
#include <string>
#include <vector>

namespace mh::route {

struct ProcessSpec {
    std::string name;   // "check", "check.2" (a replica), "check->alerts" (an edge's filter)
    std::string group;  // the stage, or the edge: what drains as one
    uint32_t replica = 0;  // 1-based within its group
    std::string host;
    std::vector<std::string> argv;  // the program (resolved) and its wiring
    manifest::Environment env;
    manifest::Restart restart;
    std::string stdout_path;  // "" = /dev/null
    std::string input_bind;   // what it binds its input to ("" for a source)
};

struct GroupSpec {
    std::string name;
    bool edge_filter = false;
    std::vector<size_t> processes;         // indexes into Plan::processes
    std::vector<size_t> upstream;          // indexes into Plan::groups
    bool remote_input = false;             // some of its input comes from another host (plan_for_host)
    const manifest::Stage* stage = nullptr;  // null for an edge filter
};

struct Plan {
    std::vector<ProcessSpec> processes;
    std::vector<GroupSpec> groups;  // in the order data flows
    const GroupSpec* find_group(std::string_view name) const;
};

// Where a process's input is: what it binds, and what its upstream connects to.
struct InputAddress {
    std::string bind;     // "@ipc:///run/x/check.1.sock"
    std::string connect;  // ">ipc:///run/x/check.1.sock"
};

struct PlanOptions {
    // The input address of replica `replica` (1-based) of group `group`, which runs on `host`;
    // `upstream_hosts` are the hosts its upstream processes run on.
    std::function<InputAddress(const std::string& group, uint32_t replica, const std::string& host,
                               const std::vector<std::string>& upstream_hosts)>
        address;
    // The program a stage runs, resolved to a path (argv[0] as written -> what to exec).
    std::function<std::string(const std::string& program)> resolve;
    std::string metrics;  // --metrics given to each process when its run has none ("" = none)
};

Plan make_plan(const manifest::Manifest& manifest, const PlanOptions& options);

// The part of `plan` that runs on `host` (as the plan's processes name it, after `host_of`):
// its groups and processes, an upstream on another host dropped from `upstream` and marked
// as remote_input. The stage pointers still point into the manifest.
Plan plan_for_host(const Plan& plan, const std::string& host,
                   const std::function<std::string(const std::string&)>& host_of);

// "ingest->alerts": the group name of a conditional edge.
std::string edge_group_name(const std::string& from, const std::string& to);

}  // namespace mh::route
