// mh-route up: the plan with ipc sockets in the runtime directory, run by the supervisor;
// with --host, one host's part of the channel, wired over tcp (and CURVE) to the others.
#include "core/error.h"
#include "route/plan.h"
#include "route/route_tool.h"
#include "route/supervisor.h"
#include "route/wiring.h"
#include "zmq/curve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>

namespace mh::route {
namespace {

constexpr size_t k_max_ipc_path = sizeof(sockaddr_un{}.sun_path) - 1;

// Refuses a second `up` of the same channel: the pid file names a live mh-route.
void claim_runtime_dir(const std::string& dir) {
    std::filesystem::create_directories(dir);
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace);
    std::string pid_path = dir + "/" + k_pid_file;
    std::ifstream existing(pid_path);
    pid_t pid = 0;
    if (existing >> pid && pid > 0 && pid != ::getpid() && ::kill(pid, 0) == 0)
        throw Error(ExitCode::temp_fail,
                    fmt::format("the channel is already up in {} (mh-route pid {}): stop it first, or give another "
                                "--runtime-dir",
                                dir, pid));
    std::ofstream(pid_path) << ::getpid() << "\n";
    std::error_code ec;
    std::filesystem::remove_all(dir + "/sock", ec);  // sockets of an earlier run
    std::filesystem::remove_all(dir + "/final", ec);
    std::filesystem::create_directories(dir + "/sock");
}

// The tcp inputs of a host bind its address in [hosts]. Where that address is not one of
// this machine's (a typo, the wrong namespace or machine, an address behind NAT), every bind
// would fail and the stages restart for ever while the other hosts wait: say so at once.
void require_local_address(const manifest::Host& host, const std::string& manifest_file) {
    sockaddr_storage probe{};
    socklen_t size = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&probe);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&probe);
    if (::inet_pton(AF_INET, host.address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        size = sizeof *v4;
    } else if (::inet_pton(AF_INET6, host.address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        size = sizeof *v6;
    } else {
        return;  // a name: the inputs bind every interface
    }
    int fd = ::socket(probe.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&probe), size);
    int error = errno;
    ::close(fd);
    if (rc != 0 && error == EADDRNOTAVAIL)
        throw Error(ExitCode::config,
                    fmt::format("--host {}: its address in [hosts] of {}, {}, is not an address of this machine (or "
                                "network namespace), so its tcp inputs cannot listen: run it where that address is, "
                                "or correct [hosts]",
                                host.name, manifest_file, host.address));
}

// The stages of the channel on one host (`up --host`): the wiring that `units` writes
// (route/wiring.h), ipc in the runtime directory between this host's stages, tcp to and
// from other hosts, CURVE on the tcp edges with --keys.
Plan plan_one_host(const UpCommand& command, const LoadedManifest& loaded, const std::string& dir, Log& log) {
    const auto& manifest = loaded.manifest;
    require_host(manifest, command.host, command.file);
    HostWiring wiring(manifest, command.host, dir + "/sock");
    std::string too_long;
    PlanOptions options;
    options.address = [&](const std::string& group, uint32_t replica, const std::string& host,
                          const std::vector<std::string>& upstream_hosts) {
        InputAddress address = wiring.address(group, replica, host, upstream_hosts);
        if (address.bind.starts_with("@ipc://") && address.bind.size() - 7 > k_max_ipc_path) too_long = address.bind.substr(7);
        return address;
    };
    auto dirs = search_dirs();
    options.resolve = [&](const std::string& program) {
        auto found = manifest::find_program(program, dirs, loaded.dir);
        return found ? std::filesystem::absolute(*found).lexically_normal().string() : program;
    };
    options.metrics = "127.0.0.1:0";
    Plan whole = make_plan(manifest, options);
    if (!too_long.empty())
        throw Error(ExitCode::config, fmt::format("the socket path {} is longer than the {} bytes a Unix socket "
                                                  "allows: give a shorter --runtime-dir",
                                                  too_long, k_max_ipc_path));
    Plan plan = plan_for_host(whole, command.host, [&](const std::string& h) { return wiring.host_of(h); });
    if (plan.processes.empty())
        throw Error(ExitCode::usage, fmt::format("--host {}: no stage of {} runs there", command.host, command.file));
    // Only this host's programs need to be installed here.
    for (const auto& process : plan.processes)
        if (process.argv[0].find('/') == std::string::npos)
            throw Error(ExitCode::config, fmt::format("{}: cannot find {} in PATH or beside mh-route: install it",
                                                      process.name, process.argv[0]));

    bool any_tcp = false;
    for (const auto& process : plan.processes) any_tcp |= uses_tcp(process);
    if (!command.keys.empty()) {
        std::string servers = curve_servers(manifest, command.keys, command.file);
        std::string keys_dir = std::filesystem::absolute(command.keys).lexically_normal().string();
        std::string key_pair = fmt::format("{}/{}.key", keys_dir, command.host);
        zmq::read_key_pair(key_pair);  // a missing or broken pair stops us here, not in every stage
        // Every tcp attachment of these processes is CURVE (zmq/curve.h): binds admit the
        // keys of KEYS/*.pub only, connects check the server's key.
        for (auto& process : plan.processes)
            if (uses_tcp(process)) {
                process.env.emplace_back("MH_CURVE_KEY", key_pair);
                process.env.emplace_back("MH_CURVE_CLIENTS", keys_dir);
                process.env.emplace_back("MH_CURVE_SERVERS", servers);
            }
    } else if (any_tcp) {
        log.warn("--host {} without --keys: the tcp edges to other hosts are neither encrypted nor authenticated "
                 "(make keys with mh-route keys {} and give --keys DIR)",
                 command.host, command.file);
    }
    for (const auto& input : wiring.tcp_inputs())
        if (input.host == command.host) {
            require_local_address(*manifest.find_host(command.host), command.file);
            break;
        }
    for (const auto& input : wiring.tcp_inputs())
        if (input.host == command.host)
            log.info("{} listens on tcp port {}{}", input.process, input.port,
                     command.keys.empty() ? "" : " (CURVE: the keys of " + command.keys + "/*.pub only)");
    return plan;
}

Plan plan_all_local(const LoadedManifest& loaded, const std::string& dir, Log& log) {
    const auto& manifest = loaded.manifest;
    for (const auto& stage : manifest.stages)
        if (!stage.host.empty() && manifest.hosts.size() > 1)
            log.warn("stage {} is meant for host {}: `up` runs every stage here (use --host, or `units`, to deploy)",
                     stage.name, stage.host);
    PlanOptions options;
    std::string too_long;
    options.address = [&](const std::string& group, uint32_t replica, const std::string&,
                          const std::vector<std::string>&) {
        std::string path = fmt::format("{}/sock/{}.{}", dir, group, replica);
        if (path.size() > k_max_ipc_path) too_long = path;
        return InputAddress{"@ipc://" + path, ">ipc://" + path};
    };
    auto dirs = search_dirs();
    options.resolve = [&](const std::string& program) {
        auto found = manifest::find_program(program, dirs, loaded.dir);
        return found ? std::filesystem::absolute(*found).lexically_normal().string() : program;
    };
    options.metrics = "127.0.0.1:0";
    Plan plan = make_plan(manifest, options);
    if (!too_long.empty())
        throw Error(ExitCode::config, fmt::format("the socket path {} is longer than the {} bytes a Unix socket "
                                                  "allows: give a shorter --runtime-dir",
                                                  too_long, k_max_ipc_path));
    return plan;
}

}  // namespace

int run_up(const UpCommand& command, Log& log) {
    if (!command.keys.empty() && command.host.empty())
        throw Error(ExitCode::usage, "--keys goes with --host: CURVE is for the tcp edges between hosts");
    // With --host, only this host's programs are looked for (below).
    auto loaded = load_checked(command.file, log, command.host.empty() ? Programs::check : Programs::skip);
    const auto& manifest = loaded.manifest;
    std::string dir = std::filesystem::absolute(runtime_dir_for(manifest, command.runtime_dir, command.host))
                          .lexically_normal()
                          .string();
    Plan plan = command.host.empty() ? plan_all_local(loaded, dir, log) : plan_one_host(command, loaded, dir, log);
    claim_runtime_dir(dir);

    SupervisorOptions supervisor;
    supervisor.runtime_dir = dir;
    supervisor.manifest_dir = std::filesystem::absolute(loaded.dir).string();
    supervisor.drain_timeout_ns = manifest.defaults.drain_timeout_ns;
    supervisor.drain_quiet_ns = manifest.defaults.drain_quiet_ns;
    int code = supervise(plan, supervisor, log);
    std::error_code ec;
    std::filesystem::remove(dir + "/" + k_pid_file, ec);
    std::filesystem::remove_all(dir + "/sock", ec);
    return code;
}

}  // namespace mh::route
