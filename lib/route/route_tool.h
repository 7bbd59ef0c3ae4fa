// mh-route's subcommands: check, graph, up, status and units of a channel manifest.
// tools/mh-route/main.cpp fills these structs from the command line and calls run_*.
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "manifest/manifest.h"

#include <string>
#include <vector>

namespace mh::route {

struct CheckCommand {
    std::string file;
    bool quiet = false;
};

struct GraphCommand {
    std::string file;
    bool text = false;
};

struct UpCommand {
    std::string file;
    std::string runtime_dir;
    std::string host;  // run only this host's stages, tcp to and from the others ("" = all, over ipc)
    std::string keys;  // with host: a directory of HOST.key and every HOST.pub (mh-route keys): CURVE
    std::string log_level = "info";
};

struct StatusCommand {
    std::string file;
    std::string runtime_dir;
    std::string host;  // as given to up --host
    double interval_s = 1.0;
    bool watch = false;
};

struct UnitsCommand {
    std::string file;
    std::string host;
    std::string dir = ".";
    std::string keys;  // a directory of HOST.pub (mh-route keys): CURVE on tcp edges
};

struct KeysCommand {
    std::string file;
    std::string dir = ".";
    bool force = false;
};

// A manifest read from a file and checked, with where it came from.
struct LoadedManifest {
    manifest::Manifest manifest;
    std::string path;
    std::string dir;  // the manifest's directory: relative paths in it start here
};

// Loads and checks `path` (structure, graph and, with Programs::check, that every program
// is installed). Prints every diagnostic and throws Error(config) when there is any.
enum class Programs { check, skip };
LoadedManifest load_checked(const std::string& path, Log& log, Programs programs = Programs::check);

// Where programs are looked for: PATH, then the directory of the running mh-route.
std::vector<std::string> search_dirs();

// The runtime directory of a channel: --runtime-dir, [defaults] runtime_dir,
// $XDG_RUNTIME_DIR/mh-route/NAME, or /tmp/mh-route-UID/NAME; for one host's part (`up
// --host`) the last three get /HOST appended, so that hosts sharing a file system (network
// namespaces, containers on one disk) do not share sockets.
std::string runtime_dir_for(const manifest::Manifest& manifest, const std::string& override_dir,
                            const std::string& host = {});

int run_check(const CheckCommand& command, Log& log);
int run_graph(const GraphCommand& command, Log& log);
int run_up(const UpCommand& command, Log& log);
int run_status(const StatusCommand& command, Log& log, const StopFlag& stop);
int run_units(const UnitsCommand& command, Log& log);
int run_keys(const KeysCommand& command, Log& log);

}  // namespace mh::route
