// Drawing a channel. DOT output is deterministic (file order) so that it can be diffed.
#include "manifest/graph.h"

#include <fmt/format.h>

namespace mh::manifest {
namespace {

std::string dot_escape(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '"' || c == '\\') out.push_back('\\');
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out.push_back(c);
    }
    return out;
}

std::string shortened(std::string text, size_t max_chars) {
    if (text.size() <= max_chars) return text;
    return text.substr(0, max_chars - 3) + "...";
}

constexpr size_t k_label_command_chars = 48;

std::string stage_node(const Stage& stage, const Manifest& manifest) {
    std::string label = stage.name;
    if (stage.replicas > 1) label += fmt::format(" \u00d7{}", stage.replicas);
    label += "\n" + shortened(join_command(stage.argv), k_label_command_chars);
    std::string shape = stage.inputs.empty() ? "cds" : manifest.readers(stage.name).empty() ? "cylinder" : "box";
    std::string extra = stage.replicas > 1 ? ", peripheries=2" : "";
    return fmt::format("\"{}\" [label=\"{}\", shape={}{}];", dot_escape(stage.name), dot_escape(label), shape, extra);
}

}  // namespace

std::string to_dot(const Manifest& manifest) {
    std::string out = fmt::format("digraph \"{}\" {{\n", dot_escape(manifest.name));
    out += "  rankdir=LR;\n  node [fontname=\"Helvetica\", style=rounded];\n  edge [fontname=\"Helvetica\"];\n";
    if (!manifest.description.empty()) out += fmt::format("  label=\"{}\";\n", dot_escape(manifest.description));
    std::vector<std::string> hosts;
    for (const auto& host : manifest.hosts) hosts.push_back(host.name);
    bool any_local = false;
    for (const auto& stage : manifest.stages)
        if (stage.host.empty()) any_local = true;
    for (const auto& host : manifest.hosts) {
        out += fmt::format("  subgraph \"cluster_{}\" {{\n    label=\"{} ({})\";\n", dot_escape(host.name),
                           dot_escape(host.name), dot_escape(host.address));
        for (const auto& stage : manifest.stages)
            if (stage.host == host.name) out += "    " + stage_node(stage, manifest) + "\n";
        out += "  }\n";
    }
    if (any_local)
        for (const auto& stage : manifest.stages)
            if (stage.host.empty()) out += "  " + stage_node(stage, manifest) + "\n";
    for (const auto& stage : manifest.stages) {
        for (const auto& input : stage.inputs) {
            out += fmt::format("  \"{}\" -> \"{}\"", dot_escape(input.stage), dot_escape(stage.name));
            const Stage* upstream = manifest.find_stage(input.stage);
            std::vector<std::string> attributes;
            if (!input.when.empty()) {
                attributes.push_back(fmt::format("label=\"{}\"", dot_escape(input.when)));
                attributes.push_back("style=dashed");
            }
            if (upstream && upstream->host != stage.host) attributes.push_back("color=blue, penwidth=2");
            if (!attributes.empty()) {
                out += " [";
                for (size_t i = 0; i < attributes.size(); ++i) out += (i ? ", " : "") + attributes[i];
                out += "]";
            }
            out += ";\n";
        }
    }
    out += "}\n";
    return out;
}

std::string to_text(const Manifest& manifest) {
    std::string out = fmt::format("channel {}: {}\n", manifest.name, summary(manifest));
    if (!manifest.description.empty()) out += "  " + manifest.description + "\n";
    for (size_t index : manifest.topological_order()) {
        const Stage& stage = manifest.stages[index];
        auto readers = manifest.readers(stage.name);
        std::string role = stage.inputs.empty() ? "source" : readers.empty() ? "destination" : "handler";
        out += fmt::format("\n{}{} ({}{})\n", stage.name, stage.replicas > 1 ? fmt::format(" x{}", stage.replicas) : "",
                           role, stage.host.empty() ? "" : ", on " + stage.host);
        out += fmt::format("  run   {}\n", join_command(stage.argv));
        for (const auto& input : stage.inputs) {
            const Stage* upstream = manifest.find_stage(input.stage);
            std::string across = upstream && upstream->host != stage.host
                                     ? fmt::format(" (tcp from {})", upstream->host.empty() ? "local" : upstream->host)
                                     : "";
            out += fmt::format("  from  {}{}{}\n", input.stage, input.when.empty() ? "" : " when " + input.when, across);
        }
        if (!readers.empty()) {
            std::string names;
            for (size_t r : readers) names += (names.empty() ? "" : ", ") + manifest.stages[r].name;
            out += fmt::format("  to    {}\n", names);
        }
        if (!stage.stdout_path.empty()) out += fmt::format("  stdout {}\n", stage.stdout_path);
        if (stage.restart.policy != RestartPolicy::on_failure)
            out += fmt::format("  restart {}\n", restart_policy_name(stage.restart.policy));
    }
    return out;
}

std::string summary(const Manifest& manifest) {
    size_t sources = 0, destinations = 0, edges = 0, conditional = 0, processes = 0;
    for (const auto& stage : manifest.stages) {
        if (stage.inputs.empty()) ++sources;
        if (manifest.readers(stage.name).empty()) ++destinations;
        edges += stage.inputs.size();
        processes += stage.replicas;
        for (const auto& input : stage.inputs)
            if (!input.when.empty()) {
                ++conditional;
                ++processes;  // the edge's filter
            }
    }
    size_t hosts = manifest.hosts.empty() ? 1 : manifest.hosts.size();
    return fmt::format("{} stage{} ({} source{}, {} destination{}), {} edge{} ({} conditional), {} host{}, {} process{}",
                       manifest.stages.size(), manifest.stages.size() == 1 ? "" : "s", sources, sources == 1 ? "" : "s",
                       destinations, destinations == 1 ? "" : "s", edges, edges == 1 ? "" : "s", conditional, hosts,
                       hosts == 1 ? "" : "s", processes, processes == 1 ? "" : "es");
}

}  // namespace mh::manifest
