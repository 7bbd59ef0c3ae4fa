// mh-cat: converts between frames and JSON lines, CSV or a readable text form, and
// relays or taps frames between any inputs and outputs.
#pragma once

#include "cli/tool.h"

#include <string>
#include <vector>

namespace mh::cat {

struct CatOptions {
    cli::CommonOptions common;
    std::string from = "frames";  // frames, json, csv
    std::string to = "frames";    // frames, json, csv, text
    bool strict = false;          // a bad JSON line or CSV row ends the run (exit 65)
    std::string time_format = "ns";
    std::vector<std::string> columns;  // CSV output columns
    uint64_t count = 0;                // stop after this many messages
};

int run(const CatOptions& options, cli::ToolContext& context);

}  // namespace mh::cat
