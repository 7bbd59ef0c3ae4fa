// Building the plan: groups in data-flow order, then each process's argv with its wiring.
#include "route/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <map>

namespace mh::route {

const GroupSpec* Plan::find_group(std::string_view name) const {
    for (const auto& group : groups)
        if (group.name == name) return &group;
    return nullptr;
}

std::string edge_group_name(const std::string& from, const std::string& to) { return from + "->" + to; }

namespace {

bool has_option(const std::vector<std::string>& argv, std::string_view option) {
    for (const auto& arg : argv)
        if (arg == option || (arg.starts_with(option) && arg.size() > option.size() && arg[option.size()] == '='))
            return true;
    return false;
}

// Whether a stage's program is an mh tool, which takes --metrics: another program (a stock
// MQTT client, a script) is run as written, and the counts cannot tell about it.
bool is_mh_tool(const std::string& program) {
    std::string_view name = program;
    if (size_t slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
    return name.starts_with("mh-");
}

std::string process_name(const std::string& group, uint32_t replica, uint32_t replicas) {
    return replicas > 1 ? fmt::format("{}.{}", group, replica) : group;
}

}  // namespace

Plan make_plan(const manifest::Manifest& manifest, const PlanOptions& options) {
    Plan plan;
    std::map<std::string, size_t> group_index;
    // Groups: each stage in data-flow order, each conditional edge just before its reader.
    for (size_t index : manifest.topological_order()) {
        const manifest::Stage& stage = manifest.stages[index];
        for (const auto& input : stage.inputs) {
            if (input.when.empty()) continue;
            GroupSpec edge;
            edge.name = edge_group_name(input.stage, stage.name);
            edge.edge_filter = true;
            edge.upstream.push_back(group_index.at(input.stage));
            group_index[edge.name] = plan.groups.size();
            plan.groups.push_back(std::move(edge));
        }
        GroupSpec group;
        group.name = stage.name;
        group.stage = &stage;
        for (const auto& input : stage.inputs)
            group.upstream.push_back(group_index.at(input.when.empty() ? input.stage : edge_group_name(input.stage, stage.name)));
        group_index[group.name] = plan.groups.size();
        plan.groups.push_back(std::move(group));
    }

    // Hosts: a stage's own; an edge filter runs beside its upstream, so that what it drops
    // never crosses the network.
    auto host_of = [&](const GroupSpec& group) -> std::string {
        if (group.stage) return group.stage->host;
        return plan.groups[group.upstream[0]].stage->host;
    };
    auto replicas_of = [&](const GroupSpec& group) -> uint32_t { return group.stage ? group.stage->replicas : 1; };
    auto upstream_hosts = [&](const GroupSpec& group) {
        std::vector<std::string> hosts;
        for (size_t u : group.upstream) hosts.push_back(host_of(plan.groups[u]));
        return hosts;
    };
    // The inputs of every group's replicas, computed once.
    std::vector<std::vector<InputAddress>> inputs(plan.groups.size());
    for (size_t g = 0; g < plan.groups.size(); ++g) {
        const GroupSpec& group = plan.groups[g];
        if (group.upstream.empty()) continue;
        for (uint32_t r = 1; r <= replicas_of(group); ++r)
            inputs[g].push_back(options.address(group.name, r, host_of(group), upstream_hosts(group)));
    }
    // Where a group's output goes: one --out per reading group, to all of its replicas.
    auto outputs_of = [&](size_t g) {
        std::vector<std::string> outs;
        for (size_t reader = 0; reader < plan.groups.size(); ++reader) {
            const auto& upstream = plan.groups[reader].upstream;
            if (std::find(upstream.begin(), upstream.end(), g) == upstream.end()) continue;
            std::string spec;
            for (const auto& address : inputs[reader]) spec += (spec.empty() ? "" : ",") + address.connect;
            outs.push_back(spec);
        }
        return outs;
    };

    for (size_t g = 0; g < plan.groups.size(); ++g) {
        GroupSpec& group = plan.groups[g];
        uint32_t replicas = replicas_of(group);
        for (uint32_t r = 1; r <= replicas; ++r) {
            ProcessSpec process;
            process.name = process_name(group.name, r, replicas);
            process.group = group.name;
            process.replica = r;
            process.host = host_of(group);
            if (group.stage) {
                process.argv = group.stage->argv;
                process.argv[0] = options.resolve(process.argv[0]);
                process.env = group.stage->env;
                process.restart = group.stage->restart;
                process.stdout_path = group.stage->stdout_path;
            } else {
                // An edge's filter: the condition of the from entry it stands for.
                const GroupSpec* reader = nullptr;
                for (const auto& candidate : plan.groups)
                    if (candidate.stage && edge_group_name(plan.groups[group.upstream[0]].name, candidate.name) == group.name)
                        reader = &candidate;
                std::string when;
                for (const auto& input : reader->stage->inputs)
                    if (input.stage == plan.groups[group.upstream[0]].name) when = input.when;
                process.argv = {options.resolve("mh-filter"), when};
                process.restart = reader->stage->restart;
            }
            if (!group.upstream.empty()) {
                process.input_bind = inputs[g][r - 1].bind;
                process.argv.insert(process.argv.end(), {"--in", process.input_bind});
            }
            for (const auto& out : outputs_of(g)) process.argv.insert(process.argv.end(), {"--out", out});
            if (!options.metrics.empty() && !has_option(process.argv, "--metrics") && is_mh_tool(process.argv[0]))
                process.argv.insert(process.argv.end(), {"--metrics", options.metrics});
            group.processes.push_back(plan.processes.size());
            plan.processes.push_back(std::move(process));
        }
    }
    return plan;
}

Plan plan_for_host(const Plan& plan, const std::string& host,
                   const std::function<std::string(const std::string&)>& host_of) {
    Plan part;
    std::vector<size_t> group_index(plan.groups.size(), SIZE_MAX);
    for (size_t g = 0; g < plan.groups.size(); ++g) {
        const GroupSpec& group = plan.groups[g];
        // A group's processes all run on one host: its stage's (or, for an edge filter, its upstream's).
        if (group.processes.empty() || host_of(plan.processes[group.processes[0]].host) != host) continue;
        GroupSpec local = group;
        local.processes.clear();
        local.upstream.clear();
        for (size_t u : group.upstream) {
            if (group_index[u] == SIZE_MAX)
                local.remote_input = true;
            else
                local.upstream.push_back(group_index[u]);
        }
        for (size_t p : group.processes) {
            local.processes.push_back(part.processes.size());
            part.processes.push_back(plan.processes[p]);
        }
        group_index[g] = part.groups.size();
        part.groups.push_back(std::move(local));
    }
    return part;
}

}  // namespace mh::route
