// mh-route keys: a CURVE key pair per host of a channel, for its tcp edges (zmq/curve.h).
#include "core/error.h"
#include "route/route_tool.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <zmq.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace mh::route {

int run_keys(const KeysCommand& command, Log& log) {
    auto loaded = load_checked(command.file, log, Programs::skip);
    std::vector<std::string> hosts;
    for (const auto& host : loaded.manifest.hosts) hosts.push_back(host.name);
    if (hosts.empty()) hosts.push_back("local");
    std::filesystem::create_directories(command.dir);
    for (const auto& host : hosts) {
        std::string secret_path = fmt::format("{}/{}.key", command.dir, host);
        std::string public_path = fmt::format("{}/{}.pub", command.dir, host);
        if (std::filesystem::exists(secret_path) && !command.force) {
            log.info("{} exists: kept (--force makes a new pair)", secret_path);
            continue;
        }
        char public_key[41], secret_key[41];
        if (zmq_curve_keypair(public_key, secret_key) != 0)
            throw Error(ExitCode::software, fmt::format("zmq_curve_keypair failed: {}", zmq_strerror(zmq_errno())));
        {
            // The secret is readable by its owner only, from the moment it exists.
            mode_t old_mask = ::umask(077);
            std::ofstream secret(secret_path, std::ios::trunc);
            ::umask(old_mask);
            secret << public_key << "\n" << secret_key << "\n";
            if (!secret) throw Error(ExitCode::io, fmt::format("cannot write {}", secret_path));
        }
        std::filesystem::permissions(secret_path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                                     std::filesystem::perm_options::replace);
        std::ofstream(public_path, std::ios::trunc) << public_key << "\n";
        std::printf("%s %s\n", secret_path.c_str(), public_path.c_str());
    }
    return 0;
}

}  // namespace mh::route
