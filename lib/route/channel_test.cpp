// mh-route test: running a channel's tests (see channel_test.h), comparing what the stages
// gave with what the tests expect, field by field, and reporting it.
#include "route/channel_test.h"

#include "core/error.h"
#include "expr/expr.h"
#include "json/json_codec.h"
#include "message/id.h"
#include "message/time.h"
#include "route/plan.h"
#include "route/route_tool.h"
#include "wire/frame_opener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

extern char** environ;

namespace mh::route {
namespace {

namespace fs = std::filesystem;

constexpr size_t k_max_shown_messages = 10;  // of a list in a report
constexpr size_t k_max_log_lines = 12;       // of a failed stage's stderr in a report
constexpr int k_kill_grace_ms = 2000;        // SIGTERM, then SIGKILL
constexpr const char* k_io_dir = "_mh_test";  // inside a test's directory: inputs, outputs, logs
constexpr uint64_t k_id_seed = 0x6d682d726f757465;  // ids of given messages: the same on every run

// ---- messages as flat lists of named values --------------------------------------------------

enum class Kind { integer, floating, text, boolean, json, bytes, time, id };

struct Item {
    std::string key;
    Kind kind = Kind::text;
    int64_t integer = 0;
    double floating = 0;
    bool boolean = false;
    std::string text;
};

using Flat = std::vector<Item>;

std::string id_text(capnp::Data::Reader id) {
    std::string text;
    for (size_t i = 0; i < id.size(); ++i) {
        if (id.size() == 16 && (i == 4 || i == 6 || i == 8 || i == 10)) text.push_back('-');
        text += fmt::format("{:02x}", static_cast<unsigned>(id[i]));
    }
    return text;
}

Flat flatten(schema::Message::Reader message) {
    Flat flat;
    auto add_text = [&](const char* key, capnp::Text::Reader text) {
        if (text.size()) flat.push_back({key, Kind::text, 0, 0, false, std::string(text.cStr(), text.size())});
    };
    if (message.getId().size()) flat.push_back({"id", Kind::id, 0, 0, false, id_text(message.getId())});
    if (message.getTime()) flat.push_back({"time", Kind::time, message.getTime(), 0, false, {}});
    if (message.getIngested()) flat.push_back({"ingested", Kind::time, message.getIngested(), 0, false, {}});
    add_text("source", message.getSource());
    add_text("gateway", message.getGateway());
    add_text("kind", message.getKind());
    for (auto field : message.getFields()) {
        Item item;
        item.key = std::string(field.getName().cStr(), field.getName().size());
        auto value = field.getValue();
        switch (value.which()) {
            case schema::Field::Value::FLOAT:
                item.kind = Kind::floating;
                item.floating = value.getFloat();
                break;
            case schema::Field::Value::INT:
                item.kind = Kind::integer;
                item.integer = value.getInt();
                break;
            case schema::Field::Value::TEXT:
                item.kind = Kind::text;
                item.text = std::string(value.getText().cStr(), value.getText().size());
                break;
            case schema::Field::Value::BOOL:
                item.kind = Kind::boolean;
                item.boolean = value.getBool();
                break;
            case schema::Field::Value::JSON:
                item.kind = Kind::json;
                item.text = std::string(value.getJson().cStr(), value.getJson().size());
                break;
        }
        flat.push_back(std::move(item));
    }
    if (message.getBody().size()) {
        auto body = message.getBody();
        flat.push_back({"body", Kind::bytes, 0, 0, false,
                        std::string(reinterpret_cast<const char*>(body.begin()), body.size())});
    }
    return flat;
}

const Item* find_item(const Flat& flat, std::string_view key) {
    for (const auto& item : flat)
        if (item.key == key) return &item;
    return nullptr;
}

std::string render(const Item& item) {
    std::string out;
    switch (item.kind) {
        case Kind::integer: return std::to_string(item.integer);
        case Kind::floating:
            if (!std::isfinite(item.floating)) return fmt::format("{}", item.floating);
            json::append_float(out, item.floating);
            return out;
        case Kind::boolean: return item.boolean ? "true" : "false";
        case Kind::json: return item.text;
        case Kind::time: return format_rfc3339(item.integer);
        case Kind::text:
        case Kind::bytes:
        case Kind::id: json::append_string(out, item.text); return out;
    }
    return out;
}

// A message for a report: JSON without the id and ingested time, which tools assign and
// which would only hide what the logic did; times in RFC 3339.
std::string show(const Flat& flat) {
    std::string text = "{";
    for (const auto& item : flat) {
        if (item.key == "id" || item.key == "ingested") continue;
        if (text.size() > 1) text.push_back(',');
        json::append_string(text, item.key);
        text.push_back(':');
        text += item.kind == Kind::time ? "\"" + render(item) + "\"" : render(item);
    }
    return text + "}";
}

bool is_number(Kind kind) { return kind == Kind::integer || kind == Kind::floating; }

bool same(const Item& expected, const Item& actual, double tolerance) {
    if (is_number(expected.kind) && is_number(actual.kind)) {
        if (expected.kind == Kind::integer && actual.kind == Kind::integer) return expected.integer == actual.integer;
        double e = expected.kind == Kind::integer ? static_cast<double>(expected.integer) : expected.floating;
        double a = actual.kind == Kind::integer ? static_cast<double>(actual.integer) : actual.floating;
        if (e == a) return true;
        return std::fabs(e - a) <= tolerance * std::max(std::fabs(e), std::fabs(a));
    }
    if (expected.kind != actual.kind) {
        // A body given as text is the same bytes as a body given as text.
        return false;
    }
    switch (expected.kind) {
        case Kind::boolean: return expected.boolean == actual.boolean;
        case Kind::time: return expected.integer == actual.integer;
        default: return expected.text == actual.text;
    }
}

// One line per difference; none when `actual` matches `expected`.
std::vector<std::string> differences(const Flat& expected, const Flat& actual, bool exact, double tolerance) {
    std::vector<std::string> lines;
    for (const auto& want : expected) {
        const Item* got = find_item(actual, want.key);
        if (!got)
            lines.push_back(fmt::format("{}: expected {}, missing", want.key, render(want)));
        else if (!same(want, *got, tolerance))
            lines.push_back(fmt::format("{}: expected {}, got {}", want.key, render(want), render(*got)));
    }
    if (exact)
        for (const auto& got : actual) {
            if (got.key == "id" || got.key == "ingested") continue;  // assigned by the tools, not the logic
            if (!find_item(expected, got.key)) lines.push_back(fmt::format("{}: not expected, got {}", got.key, render(got)));
        }
    return lines;
}

// A message seen at a stage: its flat form and its JSON line for reports.
struct Seen {
    Flat flat;
    std::string json;
    schema::Message::Reader reader;
};

// Messages of an expectation list, opened.
std::vector<Flat> flatten_all(const std::vector<manifest::TestMessage>& messages) {
    std::vector<Flat> flats;
    wire::FrameOpener opener(wire::FrameLimits{});
    for (const auto& message : messages) {
        wire::Frame frame{message.frame_words(), message.frame_word_count()};
        if (auto problem = opener.open_checked(frame))
            throw Error(ExitCode::software, fmt::format("an expected message did not read back: {}", *problem));
        flats.push_back(flatten(opener.message()));
    }
    return flats;
}

std::string plural(size_t n, std::string_view one, std::string_view many) {
    return fmt::format("{} {}", n, n == 1 ? one : many);
}

void show_messages(std::vector<std::string>& lines, const std::vector<const Seen*>& seen, std::string_view prefix) {
    for (size_t i = 0; i < seen.size() && i < k_max_shown_messages; ++i)
        lines.push_back(fmt::format("{}{}", prefix, seen[i]->json));
    if (seen.size() > k_max_shown_messages)
        lines.push_back(fmt::format("{}... and {} more", prefix, seen.size() - k_max_shown_messages));
}

// The expected messages matched to distinct actual ones, in any order: for each expected,
// the index of its match or -1. First fit: an expected message takes the first free one it
// matches.
std::vector<long> match_unordered(const std::vector<Flat>& expected, const std::vector<const Seen*>& actual, bool exact,
                                  double tolerance, std::vector<bool>& used) {
    std::vector<long> match(expected.size(), -1);
    used.assign(actual.size(), false);
    for (size_t e = 0; e < expected.size(); ++e)
        for (size_t a = 0; a < actual.size(); ++a)
            if (!used[a] && differences(expected[e], actual[a]->flat, exact, tolerance).empty()) {
                used[a] = true;
                match[e] = static_cast<long>(a);
                break;
            }
    return match;
}

// For an expected message nothing matched: the closest actual message, and how it differs.
void explain_unmatched(std::vector<std::string>& lines, const Flat& expected, const std::string& expected_json,
                       const std::vector<const Seen*>& actual, bool exact, double tolerance) {
    lines.push_back(fmt::format("no message matches {}", expected_json));
    const Seen* closest = nullptr;
    std::vector<std::string> closest_lines;
    for (const Seen* seen : actual) {
        auto diff = differences(expected, seen->flat, exact, tolerance);
        if (!closest || diff.size() < closest_lines.size()) {
            closest = seen;
            closest_lines = std::move(diff);
        }
    }
    if (!closest) return;
    lines.push_back(fmt::format("  closest: {}", closest->json));
    for (const auto& line : closest_lines) lines.push_back("    " + line);
}

}  // namespace

CheckResult check_expectation(const manifest::Expectation& expectation, std::span<const wire::Frame> frames,
                              int64_t now_ns) {
    CheckResult result;
    auto fail = [&](std::string line) {
        result.passed = false;
        result.lines.push_back(std::move(line));
    };

    // The messages seen, and those the where condition keeps.
    wire::FrameLimits limits;
    std::vector<std::unique_ptr<wire::FrameOpener>> openers;  // each keeps its message readable
    std::vector<Seen> seen;
    seen.reserve(frames.size());
    for (size_t i = 0; i < frames.size(); ++i) {
        auto opener = std::make_unique<wire::FrameOpener>(limits);
        if (auto problem = opener->open_checked(frames[i])) {
            fail(fmt::format("message {} is garbled: {}", i + 1, *problem));
            continue;
        }
        auto message = opener->message();
        if (message.getControl().isBarrier()) continue;
        Seen entry;
        entry.flat = flatten(message);
        entry.json = show(entry.flat);
        entry.reader = message;
        seen.push_back(std::move(entry));
        openers.push_back(std::move(opener));
    }
    std::vector<const Seen*> actual;
    if (expectation.where_expr.empty()) {
        for (const auto& entry : seen) actual.push_back(&entry);
    } else {
        expr::Symbols symbols;
        auto compiled = expr::Expression::compile(expectation.where_expr, symbols);
        auto* expression = std::get_if<expr::Expression>(&compiled);
        if (!expression) throw Error(ExitCode::config, "a where condition that loaded does not compile");
        expr::Record record(symbols);
        expr::Scratch scratch;
        for (const auto& entry : seen) {
            record.bind(entry.reader, now_ns);
            scratch.reset();
            if (expression->holds(record, scratch)) actual.push_back(&entry);
        }
    }
    const bool exact = expectation.exact;
    const double tolerance = expectation.tolerance;

    if (expectation.count && actual.size() != *expectation.count) {
        fail(fmt::format("expected {}, got {}", plural(*expectation.count, "message", "messages"), actual.size()));
        show_messages(result.lines, actual, "  got ");
    }

    if (expectation.has_messages) {
        auto expected = flatten_all(expectation.messages);
        if (expectation.ordered) {
            bool count_differs = expected.size() != actual.size();
            if (count_differs)
                fail(fmt::format("expected {}, got {}", plural(expected.size(), "message", "messages"), actual.size()));
            for (size_t i = 0; i < std::max(expected.size(), actual.size()); ++i) {
                if (i >= actual.size()) {
                    fail(fmt::format("message {}: missing: {}", i + 1, show(expected[i])));
                } else if (i >= expected.size()) {
                    fail(fmt::format("message {}: not expected: {}", i + 1, actual[i]->json));
                } else {
                    auto diff = differences(expected[i], actual[i]->flat, exact, tolerance);
                    if (diff.empty()) continue;
                    fail(fmt::format("message {}: {}", i + 1, actual[i]->json));
                    for (const auto& line : diff) result.lines.push_back("  " + line);
                }
            }
        } else {
            std::vector<bool> used;
            auto match = match_unordered(expected, actual, exact, tolerance, used);
            for (size_t e = 0; e < expected.size(); ++e)
                if (match[e] < 0) {
                    result.passed = false;
                    explain_unmatched(result.lines, expected[e], show(expected[e]), actual, exact, tolerance);
                }
            for (size_t a = 0; a < actual.size(); ++a)
                if (!used[a]) fail(fmt::format("not expected: {}", actual[a]->json));
        }
    }

    if (!expectation.contains.empty()) {
        auto expected = flatten_all(expectation.contains);
        std::vector<bool> used;
        auto match = match_unordered(expected, actual, exact, tolerance, used);
        for (size_t e = 0; e < expected.size(); ++e)
            if (match[e] < 0) {
                result.passed = false;
                explain_unmatched(result.lines, expected[e], show(expected[e]), actual, exact, tolerance);
            }
    }

    if (!expectation.absent.empty()) {
        auto unwanted = flatten_all(expectation.absent);
        for (const Seen* entry : actual)
            for (size_t u = 0; u < unwanted.size(); ++u)
                if (differences(unwanted[u], entry->flat, false, tolerance).empty()) {
                    fail(fmt::format("unwanted: {} (matches absent {})", entry->json, show(unwanted[u])));
                    break;
                }
    }
    return result;
}

namespace {

// ---- running stages --------------------------------------------------------------------------

std::string read_text(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

struct ChildResult {
    int status = 0;
    bool timed_out = false;
};

int open_or_throw(const std::string& path, int flags) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(ExitCode::io, errno_text(("open " + path).c_str(), errno));
    return fd;
}

// Waits for `pid` up to `timeout_ms` (-1: for ever); true when it has ended (status set).
bool wait_for(pid_t pid, int pidfd, int timeout_ms, int& status) {
    if (pidfd >= 0 && timeout_ms >= 0) {
        pollfd fd{pidfd, POLLIN, 0};
        int ready;
        do ready = ::poll(&fd, 1, timeout_ms);
        while (ready < 0 && errno == EINTR);
        if (ready == 0) return false;
    }
    pid_t done;
    do done = ::waitpid(pid, &status, 0);
    while (done < 0 && errno == EINTR);
    return true;
}

// Runs one program to its end: stdin from `in_path`, stdout to `out_path`, stderr to
// `err_path`, in `cwd`. Past `timeout_ns` it gets SIGTERM, then SIGKILL.
ChildResult run_child(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& cwd,
                      const std::string& in_path, const std::string& out_path, const std::string& err_path,
                      int64_t timeout_ns) {
    int in_fd = open_or_throw(in_path, O_RDONLY);
    int out_fd = open_or_throw(out_path, O_WRONLY | O_CREAT | O_TRUNC);
    int err_fd = open_or_throw(err_path, O_WRONLY | O_CREAT | O_TRUNC);
    std::vector<char*> args, envp;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);

    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw Error(ExitCode::software, errno_text("fork", errno));
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        ::dup2(in_fd, STDIN_FILENO);
        ::dup2(out_fd, STDOUT_FILENO);
        ::dup2(err_fd, STDERR_FILENO);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) std::signal(s, SIG_DFL);
        if (::chdir(cwd.c_str()) != 0) {
            std::string message = fmt::format("cannot enter {}: {}\n", cwd, std::strerror(errno));
            [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, message.data(), message.size());
            ::_exit(127);
        }
        ::execve(args[0], args.data(), envp.data());
        std::string message = fmt::format("cannot run {}: {}\n", argv[0], std::strerror(errno));
        [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, message.data(), message.size());
        ::_exit(127);
    }
    ::close(in_fd);
    ::close(out_fd);
    ::close(err_fd);
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    ChildResult result;
    int timeout_ms = static_cast<int>(std::min<int64_t>(timeout_ns / k_ns_per_ms, INT32_MAX));
    if (!wait_for(pid, pidfd, timeout_ms, result.status)) {
        result.timed_out = true;
        ::kill(pid, SIGTERM);
        if (!wait_for(pid, pidfd, k_kill_grace_ms, result.status)) {
            ::kill(pid, SIGKILL);
            wait_for(pid, pidfd, -1, result.status);
        }
    }
    if (pidfd >= 0) ::close(pidfd);
    return result;
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    return "ended";
}

// A stage's output file as frames; the words stay in `buffer`.
std::optional<std::string> split_frames(const std::string& path, std::vector<uint64_t>& buffer,
                                        std::vector<wire::Frame>& frames) {
    std::string bytes = read_text(path);
    frames.clear();
    if (bytes.size() % sizeof(capnp::word) != 0)
        return fmt::format("{} bytes, not whole words: it is not mh frames", bytes.size());
    buffer.resize(bytes.size() / sizeof(uint64_t));
    if (!bytes.empty()) std::memcpy(buffer.data(), bytes.data(), bytes.size());
    wire::FrameLimits limits;
    size_t offset = 0;
    while (offset < bytes.size()) {
        auto rest = std::span<const std::byte>(reinterpret_cast<const std::byte*>(buffer.data()) + offset,
                                               bytes.size() - offset);
        auto scan = wire::scan_frame(rest, limits);
        if (scan.status != wire::ScanStatus::complete || scan.frame_bytes == 0 || scan.frame_bytes > rest.size())
            return fmt::format("not mh frames from byte {} on", offset);
        frames.push_back({reinterpret_cast<const capnp::word*>(buffer.data()) + offset / sizeof(capnp::word),
                          scan.frame_bytes / sizeof(capnp::word)});
        offset += scan.frame_bytes;
    }
    return std::nullopt;
}

size_t count_frames(const std::string& path) {
    std::vector<uint64_t> buffer;
    std::vector<wire::Frame> frames;
    split_frames(path, buffer, frames);
    return frames.size();
}

void append_file(const std::string& from, std::ofstream& to) {
    std::ifstream in(from, std::ios::binary);
    to << in.rdbuf();
}

// The last lines of a stage's stderr, for a report.
std::vector<std::string> tail_lines(const std::string& path, size_t count) {
    std::vector<std::string> lines;
    std::istringstream text(read_text(path));
    std::string line;
    while (std::getline(text, line)) lines.push_back(line);
    if (lines.size() > count) lines.erase(lines.begin(), lines.end() - static_cast<long>(count));
    return lines;
}

// The environment a stage runs with: ours, the stage's env, and MH_NOW when the test pins it.
std::vector<std::string> stage_environment(const manifest::Environment& stage_env, std::optional<int64_t> now_ns) {
    std::map<std::string, std::string> env;
    for (char** entry = environ; entry && *entry; ++entry) {
        std::string_view text(*entry);
        size_t equals = text.find('=');
        if (equals == std::string_view::npos) continue;
        env[std::string(text.substr(0, equals))] = std::string(text.substr(equals + 1));
    }
    env.erase("MH_METRICS_FINAL");
    for (const auto& [name, value] : stage_env) env[name] = value;
    if (now_ns) env[k_now_env] = format_rfc3339(*now_ns);
    std::vector<std::string> out;
    for (const auto& [name, value] : env) out.push_back(name + "=" + value);
    return out;
}

bool has_own_output(const std::vector<std::string>& argv) {
    for (size_t i = 1; i < argv.size(); ++i)
        if (argv[i] == "--out" || argv[i] == "-o" || argv[i].starts_with("--out=")) return true;
    return false;
}

std::string file_name(std::string_view name) {
    std::string text(name);
    for (size_t at; (at = text.find("->")) != std::string::npos;) text.replace(at, 2, "-to-");
    for (char& c : text)
        if (c == '/') c = '_';
    return text;
}

// Given messages as the frames a source would write: one without an id gets one, as
// mh-endpoint or mh-gen give them at ingestion (stores refuse messages without), from a
// generator with a fixed seed so that every run gives the same ids.
std::vector<std::byte> with_ids(const std::vector<manifest::TestMessage>& messages, IdGenerator& ids) {
    std::vector<std::byte> out;
    wire::FrameOpener opener(wire::FrameLimits{});
    for (const auto& message : messages) {
        wire::Frame frame{message.frame_words(), message.frame_word_count()};
        if (auto problem = opener.open_checked(frame))
            throw Error(ExitCode::software, fmt::format("a given message did not read back: {}", *problem));
        auto reader = opener.message();
        if (reader.getId().size() || reader.getControl().isBarrier()) {
            auto bytes = frame.bytes();
            out.insert(out.end(), bytes.begin(), bytes.end());
            continue;
        }
        capnp::MallocMessageBuilder builder;
        builder.setRoot(reader);
        MessageId id = ids.next(reader.getTime());
        builder.getRoot<schema::Message>().setId(capnp::Data::Reader(id.data(), id.size()));
        wire::append_frame(builder, out);
    }
    return out;
}

class TestRunner {
public:
    TestRunner(const LoadedManifest& loaded, const TestCommand& command)
        : m_loaded(loaded), m_manifest(loaded.manifest), m_command(command), m_dirs(search_dirs()) {}

    // Runs one test in `dir`; prints PASS or FAIL with the reasons; true when it passed.
    bool run(const manifest::ChannelTest& test, const std::vector<std::vector<manifest::TestMessage>>& inputs,
             const fs::path& dir) {
        auto started = std::chrono::steady_clock::now();
        fs::create_directories(dir / k_io_dir);
        const std::string io = (dir / k_io_dir).string();
        std::vector<std::string> problems;  // stages that failed
        std::map<std::string, std::string> out_path, in_path;
        std::vector<std::string> flow;
        auto env_of = [&](const manifest::Environment& stage_env) { return stage_environment(stage_env, test.now_ns); };
        IdGenerator ids(k_id_seed);
        const std::string empty = io + "/empty";
        std::ofstream(empty, std::ios::binary).close();

        auto run_stage = [&](const std::string& name, std::vector<std::string> argv,
                             const manifest::Environment& stage_env, const std::string& input) -> std::string {
            std::string out = io + "/" + file_name(name) + ".out";
            std::string err = io + "/" + file_name(name) + ".log";
            argv[0] = resolve(argv[0]);
            auto result = run_child(argv, env_of(stage_env), dir.string(), input, out, err, test.timeout_ns);
            if (m_command.verbose)
                for (const auto& line : tail_lines(err, SIZE_MAX)) std::printf("      %s: %s\n", name.c_str(), line.c_str());
            if (result.timed_out || !WIFEXITED(result.status) || WEXITSTATUS(result.status) != 0) {
                problems.push_back(result.timed_out
                                       ? fmt::format("stage {} did not end within {:.3g} s of the end of its input "
                                                     "(timeout); it was stopped",
                                                     name, static_cast<double>(test.timeout_ns) / 1e9)
                                       : fmt::format("stage {} failed with {}: {}", name, describe_status(result.status),
                                                     manifest::join_command(argv)));
                for (const auto& line : tail_lines(err, k_max_log_lines)) problems.push_back("  " + line);
            }
            return out;
        };

        for (size_t index : m_manifest.topological_order()) {
            const manifest::Stage& stage = m_manifest.stages[index];
            // What arrives at the stage: its inputs, in the order of from, each through its condition.
            std::string arriving = empty;
            if (!stage.inputs.empty()) {
                arriving = io + "/" + file_name(stage.name) + ".in";
                std::ofstream merged(arriving, std::ios::binary | std::ios::trunc);
                if (!merged) throw Error(ExitCode::io, errno_text(("open " + arriving).c_str(), errno));
                for (const auto& edge : stage.inputs) {
                    std::string upstream = out_path.at(edge.stage);
                    if (!edge.when.empty() && count_frames(upstream) > 0) {
                        std::string name = edge_group_name(edge.stage, stage.name);
                        upstream = run_stage(name, {"mh-filter", edge.when}, {}, upstream);
                        flow.push_back(fmt::format("{} {}", name, count_frames(upstream)));
                    } else if (!edge.when.empty()) {
                        continue;
                    }
                    append_file(upstream, merged);
                }
            }
            in_path[stage.name] = arriving;
            size_t arrived = count_frames(arriving);

            int given = -1;
            for (size_t i = 0; i < test.inputs.size(); ++i)
                if (test.inputs[i].stage == stage.name) given = static_cast<int>(i);
            bool skipped = std::find(test.skip.begin(), test.skip.end(), stage.name) != test.skip.end();
            std::string out = io + "/" + file_name(stage.name) + ".out";
            if (given >= 0) {
                {
                    std::vector<std::byte> frames = with_ids(inputs[static_cast<size_t>(given)], ids);
                    std::ofstream file(out, std::ios::binary | std::ios::trunc);
                    file.write(reinterpret_cast<const char*>(frames.data()), static_cast<std::streamsize>(frames.size()));
                }
                flow.push_back(fmt::format("{} {} given", stage.name, count_frames(out)));
            } else if (stage.inputs.empty() || skipped) {
                std::ofstream(out, std::ios::binary | std::ios::trunc).close();
                if (!stage.inputs.empty()) flow.push_back(fmt::format("{} {} in, skipped", stage.name, arrived));
            } else {
                // A run with an --out of its own writes there as well, as under `up`.
                std::vector<std::string> argv = stage.argv;
                if (!m_manifest.readers(stage.name).empty() && has_own_output(argv)) argv.insert(argv.end(), {"--out", "-"});
                out = run_stage(stage.name, argv, stage.env, arriving);
                flow.push_back(fmt::format("{} {} in, {} out", stage.name, arrived, count_frames(out)));
            }
            out_path[stage.name] = out;
        }

        std::vector<std::string> lines = problems;
        bool passed = problems.empty();
        int64_t now_ns = test.now_ns ? *test.now_ns : wall_clock_ns();
        for (const auto& expectation : test.expectations) {
            const std::string& path =
                expectation.at == manifest::At::out ? out_path.at(expectation.stage) : in_path.at(expectation.stage);
            std::vector<uint64_t> buffer;
            std::vector<wire::Frame> frames;
            CheckResult result;
            if (auto problem = split_frames(path, buffer, frames)) {
                result.passed = false;
                result.lines.push_back(fmt::format("what stage {} wrote is {}", expectation.stage, *problem));
            } else {
                result = check_expectation(expectation, frames, now_ns);
            }
            if (result.passed) continue;
            passed = false;
            lines.push_back(fmt::format("{} ({}{}, line {}):", expectation.stage,
                                        expectation.at == manifest::At::out ? "out" : "in",
                                        expectation.where_expr.empty() ? "" : ", where " + expectation.where_expr,
                                        expectation.where.line));
            for (const auto& line : result.lines) lines.push_back("  " + line);
        }
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::printf("%s  %s (%.2f s)\n", passed ? "PASS" : "FAIL", test.name.c_str(), seconds);
        if (!passed) {
            for (const auto& line : lines) std::printf("      %s\n", line.c_str());
            std::string trace;
            for (const auto& step : flow) trace += (trace.empty() ? "" : "; ") + step;
            std::printf("      messages: %s\n", trace.c_str());
        }
        std::fflush(stdout);
        return passed;
    }

private:
    std::string resolve(const std::string& program) {
        auto found = manifest::find_program(program, m_dirs, m_loaded.dir);
        return found ? fs::absolute(*found).lexically_normal().string() : program;
    }

    const LoadedManifest& m_loaded;
    const manifest::Manifest& m_manifest;
    const TestCommand& m_command;
    std::vector<std::string> m_dirs;
};

}  // namespace

std::string default_test_file(const std::string& manifest_path) {
    fs::path path(manifest_path);
    if (path.extension() == ".toml") return (path.parent_path() / (path.stem().string() + ".test.toml")).string();
    return manifest_path + ".test.toml";
}

int run_test(const TestCommand& command, Log& log, const StopFlag& stop) {
    auto loaded = load_checked(command.file, log);
    std::string test_path = command.tests.empty() ? default_test_file(command.file) : command.tests;
    std::ifstream file(test_path, std::ios::binary);
    if (!file)
        throw Error(ExitCode::config,
                    fmt::format("cannot read the test file {}: {}{}", test_path, std::strerror(errno),
                                command.tests.empty() ? " (write tests there, or name the file with --tests)" : ""));
    std::stringstream text;
    text << file.rdbuf();
    auto loaded_tests = manifest::load_tests(text.str(), loaded.manifest);
    std::vector<manifest::Diagnostic> errors = std::move(loaded_tests.errors);

    // Input files, relative to the test file; read now, so that a bad one stops everything.
    fs::path test_dir = fs::path(test_path).parent_path();
    std::vector<std::vector<std::vector<manifest::TestMessage>>> inputs;
    for (const auto& test : loaded_tests.tests) {
        auto& test_inputs = inputs.emplace_back();
        for (const auto& input : test.inputs) {
            auto& messages = test_inputs.emplace_back(input.messages);
            if (input.file.empty()) continue;
            fs::path path = fs::path(input.file).is_absolute() ? fs::path(input.file) : test_dir / input.file;
            std::ifstream in(path, std::ios::binary);
            if (!in) {
                errors.push_back({input.file_where, fmt::format("cannot read the input file {}: {}", path.string(),
                                                                std::strerror(errno)), {}});
                continue;
            }
            std::stringstream lines;
            lines << in.rdbuf();
            if (auto problem = manifest::decode_json_lines(lines.str(), messages))
                errors.push_back({input.file_where, fmt::format("input file {}: {}", path.string(), *problem), {}});
        }
    }
    if (!errors.empty()) {
        for (const auto& error : errors) log.error("{}", manifest::format_diagnostic(test_path, error));
        throw Error(ExitCode::config, fmt::format("{}: {} error{}: no test was run", test_path, errors.size(),
                                                  errors.size() == 1 ? "" : "s"));
    }

    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/mh-route-test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!::mkdtemp(pattern.data())) throw Error(ExitCode::io, errno_text(("mkdtemp " + pattern).c_str(), errno));
    fs::path root = fs::absolute(pattern);
    // Removed however the run ends, unless --keep.
    struct Cleanup {
        const fs::path& root;
        bool keep;
        ~Cleanup() {
            std::error_code ec;
            if (!keep) fs::remove_all(root, ec);
        }
    } cleanup{root, command.keep};

    TestRunner runner(loaded, command);
    size_t run = 0, passed = 0;
    size_t interrupted = 0;
    for (size_t i = 0; i < loaded_tests.tests.size(); ++i) {
        const auto& test = loaded_tests.tests[i];
        if (!command.match.empty() && test.name.find(command.match) == std::string::npos) continue;
        if (stop.load()) {
            ++interrupted;
            continue;
        }
        ++run;
        passed += runner.run(test, inputs[i], root / std::to_string(i + 1)) ? 1 : 0;
    }
    if (command.keep) std::printf("kept: %s\n", root.c_str());
    if (interrupted) {
        log.warn("interrupted: {} test{} not run", interrupted, interrupted == 1 ? "" : "s");
        return 1;
    }
    if (run == 0) {
        log.error("no test's name contains '{}' in {}", command.match, test_path);
        return static_cast<int>(ExitCode::usage);
    }
    std::printf("%s: %zu test%s, %zu passed, %zu failed\n", test_path.c_str(), run, run == 1 ? "" : "s", passed,
                run - passed);
    return passed == run ? 0 : 1;
}

}  // namespace mh::route
