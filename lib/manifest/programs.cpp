// Is the program a stage runs installed? Looked up where mh-route will look when it starts
// the stage: a path as given (relative to the manifest), else PATH and mh-route's own directory.
#include "manifest/manifest.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <unistd.h>

namespace mh::manifest {

std::optional<std::string> find_program(std::string_view name, const std::vector<std::string>& search_dirs,
                                        const std::string& manifest_dir) {
    namespace fs = std::filesystem;
    auto executable = [](const fs::path& path) {
        std::error_code ec;
        return fs::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
    };
    if (name.empty()) return std::nullopt;
    if (name.find('/') != std::string_view::npos) {
        fs::path path(name);
        if (path.is_relative()) path = fs::path(manifest_dir) / path;
        if (executable(path)) return path.lexically_normal().string();
        return std::nullopt;
    }
    for (const auto& dir : search_dirs) {
        if (dir.empty()) continue;
        fs::path path = fs::path(dir) / name;
        if (executable(path)) return path.string();
    }
    return std::nullopt;
}

std::vector<Diagnostic> check_programs(const Manifest& manifest, const std::vector<std::string>& search_dirs,
                                       const std::string& manifest_dir) {
    std::vector<Diagnostic> errors;
    // PATH is long: say "PATH" and the one directory that is not from it (mh-route's own).
    std::string where_looked = search_dirs.empty() ? std::string("PATH")
                                                   : fmt::format("PATH and {}", search_dirs.back());
    // Names of the mh tools that are there, for a "did you mean".
    std::vector<std::string> installed;
    for (const auto& dir : search_dirs) {
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            std::string name = entry.path().filename().string();
            if (name.starts_with("mh-") && std::find(installed.begin(), installed.end(), name) == installed.end())
                installed.push_back(name);
        }
    }
    auto did_you_mean = [&](std::string_view name) {
        std::string best;
        size_t best_distance = 3;
        for (const auto& candidate : installed) {
            size_t distance = edit_distance(name, candidate);
            if (distance < best_distance) {
                best_distance = distance;
                best = candidate;
            }
        }
        return best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best);
    };
    for (const auto& stage : manifest.stages) {
        if (stage.argv.empty()) continue;
        const std::string& program = stage.argv[0];
        if (find_program(program, search_dirs, manifest_dir)) continue;
        if (program.find('/') != std::string::npos)
            errors.push_back({stage.run_where,
                              fmt::format("stage {} runs '{}', which is not an executable file: fix the path (a "
                                          "relative one starts at the manifest's directory)",
                                          stage.name, program),
                              {}});
        else
            errors.push_back({stage.run_where,
                              fmt::format("stage {} runs '{}', which is not installed{}: it is not in {}; install "
                                          "it, fix the name, or give its full path",
                                          stage.name, program, did_you_mean(program), where_looked),
                              {}});
    }
    if (manifest.has_conditions() && !find_program("mh-filter", search_dirs, manifest_dir)) {
        for (const auto& stage : manifest.stages)
            for (const auto& input : stage.inputs)
                if (!input.when.empty()) {
                    errors.push_back({input.when_where,
                                      "a when condition runs mh-filter on its edge, and mh-filter is not installed "
                                      "(not in " + where_looked + ")",
                                      {}});
                    return errors;
                }
    }
    return errors;
}

}  // namespace mh::manifest
