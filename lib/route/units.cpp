// mh-route units: the plan for one host as systemd units, one service per process and a
// target that pulls them in. Stages on one host talk over ipc sockets in the channel's
// runtime directory; an input that another host feeds listens on tcp (route/wiring.h, the
// same wiring as `up --host`).
#include "core/error.h"
#include "route/plan.h"
#include "route/route_tool.h"
#include "route/wiring.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

namespace mh::route {
namespace {

// systemd's ExecStart= syntax: double quotes with C escapes; % starts a specifier and $ a
// variable, so both are doubled.
std::string systemd_word(std::string_view word) {
    bool plain = !word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                         "0123456789-_./:=,+@") == std::string_view::npos;
    std::string out = plain ? "" : "\"";
    for (char c : word) {
        if (c == '%') out += "%%";
        else if (c == '$') out += "$$";
        else if (c == '"' || c == '\\') { out.push_back('\\'); out.push_back(c); }
        else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else out.push_back(c);
    }
    if (!plain) out.push_back('"');
    return out;
}

// Environment= expands specifiers (%) but not variables.
std::string systemd_env(std::string_view assignment) {
    std::string out = "\"";
    for (char c : assignment) {
        if (c == '%') out += "%%";
        else if (c == '"' || c == '\\') { out.push_back('\\'); out.push_back(c); }
        else out.push_back(c);
    }
    return out + "\"";
}

std::string systemd_command(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& word : argv) text += (text.empty() ? "" : " ") + systemd_word(word);
    return text;
}

// Unit names allow letters, digits and ":_.-\@"; "warm->alerts" becomes "warm-to-alerts".
std::string unit_part(std::string name) {
    for (size_t at; (at = name.find("->")) != std::string::npos;) name.replace(at, 2, "-to-");
    return name;
}

// Absolute paths after --db: the state a stage keeps. Under /var/lib they become
// StateDirectory= (created and owned by systemd), elsewhere ReadWritePaths=.
std::vector<std::string> state_paths(const std::vector<std::string>& argv) {
    std::vector<std::string> paths;
    for (size_t i = 1; i < argv.size(); ++i) {
        std::string_view arg = argv[i];
        std::string value;
        if (arg == "--db" && i + 1 < argv.size())
            value = argv[i + 1];
        else if (arg.starts_with("--db="))
            value = std::string(arg.substr(5));
        if (!value.empty()) paths.push_back(value);
    }
    return paths;
}

}  // namespace

int run_units(const UnitsCommand& command, Log& log) {
    auto loaded = load_checked(command.file, log, Programs::skip);
    const auto& manifest = loaded.manifest;
    require_host(manifest, command.host, command.file);
    // The ipc directory: /run/mh/NAME (RuntimeDirectory=), or [defaults] runtime_dir.
    std::string runtime_dir = manifest.defaults.runtime_dir.empty() ? "/run/mh/" + manifest.name
                                                                     : manifest.defaults.runtime_dir;
    HostWiring wiring(manifest, command.host, runtime_dir);
    auto host_of = [&](const std::string& stage_host) { return wiring.host_of(stage_host); };
    PlanOptions options;
    options.address = [&](const std::string& group, uint32_t replica, const std::string& host,
                          const std::vector<std::string>& upstream_hosts) {
        return wiring.address(group, replica, host, upstream_hosts);
    };
    auto dirs = search_dirs();
    std::vector<std::string> unresolved;
    options.resolve = [&](const std::string& program) -> std::string {
        if (program.starts_with('/')) return program;
        if (!manifest.defaults.bin_dir.empty() && program.find('/') == std::string::npos)
            return manifest.defaults.bin_dir + "/" + program;
        if (auto found = manifest::find_program(program, dirs, loaded.dir))
            return std::filesystem::absolute(*found).lexically_normal().string();
        unresolved.push_back(program);
        return program;
    };
    Plan plan = make_plan(manifest, options);
    if (!unresolved.empty())
        throw Error(ExitCode::config, fmt::format("cannot find {} for ExecStart=: install it here or set [defaults] "
                                                  "bin_dir to where the hosts have the mh tools",
                                                  unresolved.front()));

    // CURVE: every host's public key, by the address its peers connect to.
    std::string keys_dir = manifest.defaults.keys_dir.empty() ? "/etc/mh/" + manifest.name : manifest.defaults.keys_dir;
    std::string servers;
    if (!command.keys.empty()) servers = curve_servers(manifest, command.keys, command.file);

    std::filesystem::create_directories(command.dir);
    std::string prefix = "mh-" + manifest.name;
    std::string target = prefix + ".target";
    std::vector<std::string> written;
    std::string wants;
    for (const auto& process : plan.processes) {
        if (host_of(process.host) != command.host) continue;
        const GroupSpec* group = plan.find_group(process.group);
        std::string unit = fmt::format("{}-{}.service", prefix, unit_part(process.name));
        bool tcp = uses_tcp(process);
        std::string description =
            group->edge_filter ? fmt::format("the condition on the edge {}", process.group)
            : group->stage->replicas > 1
                ? fmt::format("stage {} (replica {} of {})", process.group, process.replica, group->stage->replicas)
                : fmt::format("stage {}", process.group);
        std::string text = fmt::format(
            "# Generated by mh-route units from {} for host {}: regenerate rather than edit.\n"
            "[Unit]\nDescription=mh channel {}: {}\nPartOf={}\n",
            std::filesystem::path(loaded.path).filename().string(), command.host, manifest.name, description, target);
        // Start order follows data backwards: readers bind before their writers connect,
        // and on stop the writers go first, so a reader outlives what feeds it on this host.
        std::vector<std::string> upstream_units;
        for (size_t u : group->upstream)
            for (size_t i : plan.groups[u].processes) {
                const ProcessSpec& up = plan.processes[i];
                if (host_of(up.host) == command.host)
                    upstream_units.push_back(fmt::format("{}-{}.service", prefix, unit_part(up.name)));
            }
        if (!upstream_units.empty()) {
            text += "Before=";
            for (size_t i = 0; i < upstream_units.size(); ++i) text += (i ? " " : "") + upstream_units[i];
            text += "\n";
        }
        if (tcp) text += "After=network-online.target\nWants=network-online.target\n";
        // Restarts go on for as long as it takes, as under mh-route up.
        text += "StartLimitIntervalSec=0\n";
        text += "\n[Service]\nType=simple\n";
        text += "ExecStart=" + systemd_command(process.argv) + "\n";
        for (const auto& [name, value] : process.env) text += "Environment=" + systemd_env(name + "=" + value) + "\n";
        if (tcp && !command.keys.empty()) {
            // The host's key pair comes in as a credential, readable by the dynamic user only.
            text += fmt::format("LoadCredential=curve.key:{}/{}.key\n", keys_dir, command.host);
            text += "Environment=MH_CURVE_KEY=%d/curve.key\n";
            text += "Environment=" + systemd_env("MH_CURVE_CLIENTS=" + keys_dir) + "\n";
            text += "Environment=" + systemd_env("MH_CURVE_SERVERS=" + servers) + "\n";
        }
        const auto& restart = process.restart;
        text += fmt::format("Restart={}\n", restart.policy == manifest::RestartPolicy::never      ? "no"
                                            : restart.policy == manifest::RestartPolicy::always ? "always"
                                                                                                : "on-failure");
        text += fmt::format("RestartSec={}ms\n", std::max<int64_t>(1, restart.delay_ns / 1'000'000));
        // systemd 252 has no RestartSteps= for an exponential back-off: the delay is fixed.
        text += fmt::format("TimeoutStopSec={}s\n", std::max<int64_t>(1, manifest.defaults.drain_timeout_ns / 1'000'000'000));
        // One dynamic user for the whole channel (systemd gives units that name the same User=
        // the same UID), so that its stages can reach each other's ipc sockets.
        if (manifest.defaults.user.empty())
            text += "DynamicUser=yes\nUser=" + prefix + "\n";
        else
            text += "User=" + manifest.defaults.user + "\n";
        if (runtime_dir.starts_with("/run/"))
            text += "RuntimeDirectory=" + runtime_dir.substr(5) + "\nRuntimeDirectoryPreserve=yes\n";
        else
            text += "ReadWritePaths=" + runtime_dir + "\n";
        std::vector<std::string> state_dirs, writable;
        for (const auto& path : state_paths(process.argv)) {
            if (path.starts_with("/var/lib/") && path.size() > 9)
                state_dirs.push_back(path.substr(9));
            else if (path.starts_with('/'))
                writable.push_back(path);
            else
                log.warn("{}: --db {} is relative: under systemd it would be relative to /; give an absolute path "
                         "(under /var/lib for a StateDirectory=)",
                         process.name, path);
        }
        for (const auto& dir : state_dirs) text += "StateDirectory=" + dir + "\n";
        for (const auto& dir : writable) text += "ReadWritePaths=" + dir + "\n";
        if (process.stdout_path.empty()) {
            text += "StandardOutput=null\n";
        } else if (process.stdout_path.starts_with('/')) {
            text += "StandardOutput=append:" + process.stdout_path + "\n";
        } else {
            // Relative to the manifest under up; here, to the channel's state directory.
            text += "StateDirectory=" + prefix + "\nStandardOutput=append:/var/lib/" + prefix + "/" +
                    process.stdout_path + "\n";
        }
        text += "StandardError=journal\nSyslogIdentifier=" + prefix + "-" + unit_part(process.name) + "\n";
        text +=
            "NoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\n"
            "ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\nProtectControlGroups=yes\n"
            "ProtectClock=yes\nProtectHostname=yes\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"
            "RestrictNamespaces=yes\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\n"
            "MemoryDenyWriteExecute=yes\nSystemCallArchitectures=native\nSystemCallFilter=@system-service\n"
            "CapabilityBoundingSet=\nUMask=0077\n";
        text += "\n[Install]\nWantedBy=" + target + "\n";
        std::ofstream(command.dir + "/" + unit) << text;
        written.push_back(unit);
        wants += (wants.empty() ? "" : " ") + unit;
    }
    if (written.empty()) log.warn("no stage of {} runs on host {}", manifest.name, command.host);
    std::string target_text = fmt::format(
        "# Generated by mh-route units from {} for host {}: regenerate rather than edit.\n"
        "[Unit]\nDescription=mh channel {} on host {}\nWants={}\n\n[Install]\nWantedBy=multi-user.target\n",
        std::filesystem::path(loaded.path).filename().string(), command.host, manifest.name, command.host, wants);
    std::ofstream(command.dir + "/" + target) << target_text;
    written.push_back(target);
    for (const auto& name : written) std::printf("%s/%s\n", command.dir.c_str(), name.c_str());
    for (const auto& input : wiring.tcp_inputs())
        if (input.host == command.host)
            log.info("{} listens on tcp port {}: open it to the hosts that feed it", input.process, input.port);
    return 0;
}

}  // namespace mh::route
