// mh-route test: a channel's unit tests, run with the channel's real tools. Each test feeds
// its messages in place of the stages it names, runs every other stage once, in data-flow
// order, as a process reading its input from a file and writing its output to one (the
// edges' when conditions through mh-filter, as `up` wires them), in a fresh directory and
// with the clock MH_NOW pins; then checks what came out of, or arrived at, the stages it
// names. Replicas run as one process: how a channel shares load among them is timing, not
// logic. The file format is in man/mh-route.1, "TEST FILES".
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "manifest/test_file.h"
#include "wire/frame.h"

#include <span>
#include <string>
#include <vector>

namespace mh::route {

struct TestCommand {
    std::string file;
    std::string tests;  // "" = the manifest's name with .test.toml in place of .toml
    std::string match;  // run only the tests whose name contains it
    bool keep = false;  // keep each test's directory (stage inputs, outputs, logs, stores)
    bool verbose = false;
};

// "cold-chain.toml" -> "cold-chain.test.toml".
std::string default_test_file(const std::string& manifest_path);

// What one expectation found: passed, or the lines that say why not.
struct CheckResult {
    bool passed = true;
    std::vector<std::string> lines;
};

// Checks `expectation` against the messages seen at its stage (barriers are skipped).
// `now_ns` is what now() gives in its where condition.
CheckResult check_expectation(const manifest::Expectation& expectation, std::span<const wire::Frame> actual,
                              int64_t now_ns);

// 0 when every test passes, 1 when one fails or `stop` cut the run short; throws
// Error(config) for a broken manifest or test file.
int run_test(const TestCommand& command, Log& log, const StopFlag& stop);

}  // namespace mh::route
