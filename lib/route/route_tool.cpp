// check and graph, and what every subcommand shares: reading the manifest and finding
// the runtime directory.
#include "route/route_tool.h"

#include "core/error.h"
#include "manifest/graph.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace mh::route {

std::vector<std::string> search_dirs() {
    std::vector<std::string> dirs;
    if (const char* path = std::getenv("PATH")) {
        std::string_view rest = path;
        while (!rest.empty()) {
            size_t colon = rest.find(':');
            dirs.emplace_back(rest.substr(0, colon));
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) dirs.push_back(self.parent_path().string());
    return dirs;
}

LoadedManifest load_checked(const std::string& path, Log& log, Programs programs) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw Error(ExitCode::io, fmt::format("cannot read the manifest {}: {}", path, std::strerror(errno)));
    std::stringstream text;
    text << file.rdbuf();
    std::filesystem::path fs_path(path);
    LoadedManifest loaded;
    loaded.path = path;
    loaded.dir = fs_path.parent_path().empty() ? "." : fs_path.parent_path().string();
    auto result = manifest::load(text.str(), fs_path.stem().string());
    std::vector<manifest::Diagnostic> errors = std::move(result.errors);
    if (programs == Programs::check) {
        auto missing = manifest::check_programs(result.manifest, search_dirs(), loaded.dir);
        errors.insert(errors.end(), missing.begin(), missing.end());
        std::stable_sort(errors.begin(), errors.end(), [](const auto& a, const auto& b) {
            return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
        });
    }
    if (!errors.empty()) {
        for (const auto& error : errors) log.error("{}", manifest::format_diagnostic(path, error));
        throw Error(ExitCode::config, fmt::format("{}: {} error{}: nothing was started", path, errors.size(),
                                                  errors.size() == 1 ? "" : "s"));
    }
    loaded.manifest = std::move(result.manifest);
    return loaded;
}

std::string runtime_dir_for(const manifest::Manifest& manifest, const std::string& override_dir,
                            const std::string& host) {
    if (!override_dir.empty()) return override_dir;
    std::string suffix = host.empty() ? "" : "/" + host;
    if (!manifest.defaults.runtime_dir.empty()) return manifest.defaults.runtime_dir + suffix;
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
        return fmt::format("{}/mh-route/{}{}", xdg, manifest.name, suffix);
    return fmt::format("/tmp/mh-route-{}/{}{}", ::getuid(), manifest.name, suffix);
}

int run_check(const CheckCommand& command, Log& log) {
    auto loaded = load_checked(command.file, log);
    if (!command.quiet) std::printf("%s: ok: %s\n", command.file.c_str(), manifest::summary(loaded.manifest).c_str());
    return 0;
}

int run_graph(const GraphCommand& command, Log& log) {
    auto loaded = load_checked(command.file, log, Programs::skip);
    std::string out = command.text ? manifest::to_text(loaded.manifest) : manifest::to_dot(loaded.manifest);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

}  // namespace mh::route
