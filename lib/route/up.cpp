// mh-route up: the plan with ipc sockets in the runtime directory, run by the supervisor.
#include "core/error.h"
#include "route/plan.h"
#include "route/route_tool.h"
#include "route/supervisor.h"

#include <sys/un.h>
#include <unistd.h>

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

}  // namespace

int run_up(const UpCommand& command, Log& log) {
    auto loaded = load_checked(command.file, log);
    const auto& manifest = loaded.manifest;
    std::string dir = std::filesystem::absolute(runtime_dir_for(manifest, command.runtime_dir)).lexically_normal().string();
    for (const auto& stage : manifest.stages)
        if (!stage.host.empty() && manifest.hosts.size() > 1)
            log.warn("stage {} is meant for host {}: `up` runs every stage here (use `units` to deploy)", stage.name,
                     stage.host);

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
