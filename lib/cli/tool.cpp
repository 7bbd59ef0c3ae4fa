#include "cli/tool.h"

#include "wire/fd_input.h"
#include "wire/fd_output.h"

#include <cstdlib>
#include <fcntl.h>
#include <kj/exception.h>
#include <unistd.h>

namespace mh::cli {

std::string version_text(const std::string& tool) { return tool + " (mh) 0.1.0"; }

std::string all_subcommands_help(CLI::App& app) {
    std::string text;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        text += "\n" + sub->help(app.get_name());
    return text;
}

CLI::Validator unsigned_number() {
    return CLI::Validator(
        [](std::string& text) { return text.starts_with('-') ? std::string("expected 0 or more") : std::string(); },
        "", "unsigned");
}

void add_common_options(CLI::App& app, CommonOptions& options, Streams streams) {
    if (streams == Streams::in_and_out)
        app.add_option("-i,--in", options.in,
                       "Input: - (stdin), a file, or an endpoint: @tcp://*:7001 binds, "
                       ">tcp://host:7001 connects, sub>ipc://path subscribes")
            ->capture_default_str();
    app.add_option("-o,--out", options.out,
                   "Output, repeatable (each gets every message): - (stdout, the default), a file, "
                   "or an endpoint such as >tcp://host:7001 or pub@ipc:///run/mh/tap");
    app.add_option("--dead-letter", options.dead_letter,
                   "Where garbled input frames go (an output spec); otherwise they are counted and dropped");
    app.add_option("--metrics", options.metrics,
                   "Serve Prometheus metrics over HTTP on HOST:PORT (e.g. 127.0.0.1:9100)");
    app.add_option("--log-level", options.log_level, "error, warn, info or debug")
        ->capture_default_str()
        ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}));
    app.add_option("--max-frame", options.max_frame_bytes,
                   "Largest frame accepted, in bytes; a larger one breaks the input stream")
        ->capture_default_str()
        ->check(CLI::Range(size_t{64}, size_t{1} << 30));
    app.set_version_flag("--version", version_text(app.get_name()));
}

ToolContext::ToolContext(std::string tool, const CommonOptions& options)
    : m_options(options),
      m_log(std::move(tool), parse_log_level(options.log_level).value_or(LogLevel::info)) {
    if (!options.metrics.empty()) {
        m_metrics_server = std::make_unique<metrics::Server>(m_metrics, options.metrics, m_log);
        if (options.metrics.ends_with(":0"))  // the system picked the port: say which
            m_log.info("metrics on port {}", m_metrics_server->port());
    }
}

ToolContext::~ToolContext() {
    m_metrics_server.reset();
    write_final_metrics();
    for (int fd : m_owned_fds) ::close(fd);
}

void ToolContext::write_final_metrics() noexcept {
    // mh-route learns from this what a stage sent before it ended: a metrics server ends
    // with its process, so the last counts would otherwise be lost.
    const char* path = std::getenv(k_final_metrics_env);
    if (!path || !*path) return;
    std::string text = m_metrics.render();
    std::string temporary = std::string(path) + ".tmp";
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (written) ::rename(temporary.c_str(), path);
}

zmq::Context& ToolContext::zmq() {
    if (!m_zmq) m_zmq = std::make_unique<zmq::Context>(&m_stop, &m_log);
    return *m_zmq;
}

namespace {
bool looks_like_endpoint(const std::string& spec) { return spec.find("://") != std::string::npos; }

zmq::Endpoint endpoint_or_throw(const std::string& spec, zmq::Direction direction) {
    auto parsed = zmq::parse_endpoint(spec, direction);
    if (auto* error = std::get_if<zmq::EndpointError>(&parsed)) throw Error(ExitCode::usage, error->message);
    return std::get<zmq::Endpoint>(parsed);
}
}  // namespace

int ToolContext::open_input_fd(const std::string& spec) {
    if (zmq::is_stdio(spec)) return STDIN_FILENO;
    if (looks_like_endpoint(spec))
        throw Error(ExitCode::usage, fmt::format("--in '{}': text formats are read from stdin or a file, "
                                                 "frames from sockets (use --from frames)", spec));
    int fd = ::open(spec.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(ExitCode::io, fmt::format("cannot open '{}': {}", spec, std::strerror(errno)));
    m_owned_fds.push_back(fd);
    return fd;
}

int ToolContext::open_output_fd(const std::string& spec) {
    if (zmq::is_stdio(spec)) return STDOUT_FILENO;
    if (looks_like_endpoint(spec))
        throw Error(ExitCode::usage, fmt::format("--out '{}': text formats go to stdout or a file, "
                                                 "frames to sockets (use --to frames)", spec));
    int fd = ::open(spec.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(ExitCode::io, fmt::format("cannot create '{}': {}", spec, std::strerror(errno)));
    m_owned_fds.push_back(fd);
    return fd;
}

namespace {
// With port 0 or *, the system picks the port: say which, so peers can be pointed at it.
void log_picked_port(const zmq::Socket& socket, Log& log) {
    if (socket.binds_any_port()) log.info("bound {}", socket.last_endpoint());
}
}  // namespace

std::unique_ptr<wire::FrameSource> ToolContext::open_frame_source(const std::string& spec) {
    if (looks_like_endpoint(spec)) {
        auto reader = std::make_unique<zmq::ZmqFrameReader>(
            zmq(), endpoint_or_throw(spec, zmq::Direction::in), &m_stop, limits());
        log_picked_port(reader->socket(), m_log);
        return reader;
    }
    return std::make_unique<wire::FdFrameReader>(open_input_fd(spec), &m_stop, limits());
}

std::unique_ptr<wire::FrameSink> ToolContext::open_frame_sink(const std::string& spec) {
    if (looks_like_endpoint(spec)) {
        auto writer = std::make_unique<zmq::ZmqFrameWriter>(zmq(), endpoint_or_throw(spec, zmq::Direction::out));
        log_picked_port(writer->socket(), m_log);
        return writer;
    }
    return std::make_unique<wire::FdFrameWriter>(open_output_fd(spec));
}

int run_main(CLI::App& app, const CommonOptions& options, int argc, char** argv,
             const std::function<int(ToolContext&)>& run) {
    std::string tool = app.get_name();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);  // prints help, version or the error
        return code == 0 ? 0 : static_cast<int>(ExitCode::usage);
    }
    Log fallback_log(tool);
    try {
        ToolContext context(tool, options);
        install_stop_signals(context.stop());
        return run(context);
    } catch (const OutputClosed&) {
        return 0;
    } catch (const Error& e) {
        fallback_log.error("{}", e.what());
        return static_cast<int>(e.code());
    } catch (const kj::Exception& e) {
        fallback_log.error("internal error: {}", e.getDescription().cStr());
        return static_cast<int>(ExitCode::software);
    } catch (const std::exception& e) {
        fallback_log.error("internal error: {}", e.what());
        return static_cast<int>(ExitCode::software);
    }
}

}  // namespace mh::cli
