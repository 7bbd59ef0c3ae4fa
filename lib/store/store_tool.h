// mh-store's subcommands: what main() runs once CLI11 has filled the option structs.
//   append  frames from stdin or --in into the store, group committed
//   query   frames (or JSON, CSV, text) out of it, by time, source and expression
//   tail    history in the order it came, then what is appended (--follow), paced or not
//   plot    an SVG chart of fields of sources over time
//   stat    what is in it;   check   whether it is sound;   retain  drop the oldest
#pragma once

#include "cli/tool.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::store {

struct AppendCommand {
    std::string db;
    size_t batch = 65536;         // messages per commit at most
    std::string linger = "5ms";   // longest a message waits for its batch's commit
    std::string sync = "commit";  // commit: fsync per commit; none: the OS writes back
    std::string confirm;          // where committed barriers go (an output spec)
    std::string max_size;         // largest the store may grow (bytes, or 512M, 20G, ...)
    std::string retain_age;       // as it runs, delete what is older than this (30d)
    std::string retain_size;      // as it runs, delete the oldest beyond this many frame bytes
    std::string wait_for_room;    // a full store: hold the input this long, trying again (default: stop at once)
};

struct QueryCommand {
    std::string db;
    std::string from, to;  // event time; RFC 3339, ns, now, or -1h (relative to now)
    std::optional<std::string> source;
    std::string where;
    uint64_t limit = 0;
    std::string format = "frames";  // frames, json, csv, text
    std::string time_format = "ns";
    std::vector<std::string> columns;
    bool progress = false, no_progress = false;  // force progress on stderr on or off
};

struct StatCommand {
    std::string db;
    bool json = false;
};

struct CheckCommand {
    std::string db;
};

struct TailCommand {
    std::string db;
    std::string from;         // ingestion time to start at (RFC 3339, ns, -1h); default: the end, or the start without --follow
    bool from_start = false;
    bool follow = false;      // keep writing what is appended, until stopped
    double speed = 0;         // > 0: replay at this many times the original pace (event-time gaps kept)
    std::string format = "frames";
    std::string time_format = "ns";
    std::vector<std::string> columns;
    bool progress = false, no_progress = false;
};

struct PlotCommand {
    std::string db;
    std::vector<std::string> sources;  // names or globs
    std::vector<std::string> fields;
    std::vector<std::string> units;
    std::string from, to;
    unsigned width = 960, height = 480;
    std::string title;
    std::string output = "-";  // the SVG file, - for stdout
};

struct RetainCommand {
    std::string db;
    std::string max_age;   // a duration of event time before now: 30d, 12h
    std::string max_size;  // frame bytes kept at most: 20G
};

int run_append(const AppendCommand& command, cli::ToolContext& context);
int run_query(const QueryCommand& command, cli::ToolContext& context);
int run_stat(const StatCommand& command, cli::ToolContext& context);
int run_check(const CheckCommand& command, cli::ToolContext& context);
int run_retain(const RetainCommand& command, cli::ToolContext& context);
int run_tail(const TailCommand& command, cli::ToolContext& context);
int run_plot(const PlotCommand& command, cli::ToolContext& context);

// A time on the command line: what parse_time_arg takes (RFC 3339, integer ns, now), or a
// duration relative to `now_ns` with its sign: "-1h" is an hour ago, "+5m" in five minutes.
std::optional<int64_t> parse_query_time(std::string_view text, int64_t now_ns);

// Bytes, with an optional binary suffix: 1048576, 512K, 64M, 20G, 1T.
std::optional<uint64_t> parse_size(std::string_view text);

}  // namespace mh::store
