// Shared plumbing of every mh tool: the common options, the context main() creates
// (log, stop flag, ZeroMQ context, metrics) and the one wrapper that maps whatever
// escapes to an exit code.
#pragma once

#include "core/error.h"
#include "core/log.h"
#include "core/stop.h"
#include "metrics/metrics.h"
#include "wire/stream.h"
#include "zmq/socket.h"

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mh::cli {

struct CommonOptions {
    std::string in = "-";
    std::vector<std::string> out;  // empty means stdout
    std::string dead_letter;       // where garbled frames go, if anywhere
    std::string metrics;           // HOST:PORT
    std::string log_level = "info";
    size_t max_frame_bytes = wire::k_default_max_frame_bytes;
};

enum class Streams { in_and_out, out_only };

// --in/--out (as `streams` says), --dead-letter, --metrics, --log-level, --max-frame, --version.
void add_common_options(CLI::App& app, CommonOptions& options, Streams streams);

// When this environment variable names a file, a tool writes its metrics there (Prometheus
// text) as it exits: how mh-route knows what a stage that ended had sent.
constexpr const char* k_final_metrics_env = "MH_METRICS_FINAL";

// What a tool's component gets from main(): everything with a lifetime is owned here.
class ToolContext {
public:
    ToolContext(std::string tool, const CommonOptions& options);
    ~ToolContext();

    Log& log() { return m_log; }
    StopFlag& stop() { return m_stop; }
    metrics::Registry& metrics() { return m_metrics; }
    zmq::Context& zmq();  // created on first use: a tool on pipes starts no I/O threads
    wire::FrameLimits limits() const { return {m_options.max_frame_bytes}; }
    const CommonOptions& options() const { return m_options; }

    // "-" is stdin/stdout, an endpoint (see zmq/endpoint.h) a socket, anything else a file.
    std::unique_ptr<wire::FrameSource> open_frame_source(const std::string& spec);
    std::unique_ptr<wire::FrameSink> open_frame_sink(const std::string& spec);
    // An fd for text formats: stdin/stdout or a file. Throws usage for socket endpoints.
    int open_input_fd(const std::string& spec);
    int open_output_fd(const std::string& spec);

private:
    void write_final_metrics() noexcept;

    CommonOptions m_options;
    Log m_log;
    StopFlag m_stop{false};
    metrics::Registry m_metrics;
    std::unique_ptr<zmq::Context> m_zmq;
    std::unique_ptr<metrics::Server> m_metrics_server;
    std::vector<int> m_owned_fds;
};

// Parses argv into `app`, then calls `run` with a ToolContext; maps parse errors to 64,
// mh::Error to its code (with the message on stderr), a closed output to 0, anything
// else to 70. Installs the stop signals.
int run_main(CLI::App& app, const CommonOptions& options, int argc, char** argv,
             const std::function<int(ToolContext&)>& run);

std::string version_text(const std::string& tool);

// For tools with subcommands: --help of the tool itself shows every subcommand's options too,
// one page to read. Use as `app.footer([&app] { return all_subcommands_help(app); })`.
std::string all_subcommands_help(CLI::App& app);

// For unsigned options: CLI11 would wrap "-1" around to 2^64-1.
CLI::Validator unsigned_number();

}  // namespace mh::cli
