// The supervisor's loop: one thread, poll() on a signalfd and every child's stderr pipe,
// timers for restarts and for the drain. See supervisor.h for the drain rule.
#include "route/supervisor.h"

#include "cli/tool.h"
#include "core/error.h"
#include "route/scrape.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>

extern char** environ;

namespace mh::route {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int k_scrape_timeout_ms = 1000;
constexpr auto k_drain_poll = 50ms;        // how often a draining group's counters are read
constexpr auto k_idle_poll = 1000ms;       // state file refresh when nothing happens
constexpr auto k_stable_run = 10s;         // a process that ran this long starts its back-off afresh
constexpr size_t k_max_line_bytes = 64 << 10;
constexpr std::string_view k_port_marker = "metrics on port ";

enum class State { pending, running, backoff, stopping, exited, failed };

std::string_view state_name(State state) {
    switch (state) {
        case State::pending: return "starting";
        case State::running: return "running";
        case State::backoff: return "backoff";
        case State::stopping: return "stopping";
        case State::exited: return "exited";
        case State::failed: return "failed";
    }
    return "?";
}

bool is_done(State state) { return state == State::exited || state == State::failed; }

struct Process {
    const ProcessSpec* spec = nullptr;
    size_t group = 0;
    State state = State::pending;
    pid_t pid = 0;
    int stderr_fd = -1;
    std::string partial;
    Clock::time_point started;
    Clock::time_point restart_at;
    int64_t delay_ns = 0;
    uint32_t restarts = 0;
    int metrics_port = 0;
    std::string final_path;
    // Counts of the incarnations that ended, and whether all of them told theirs.
    uint64_t done_in = 0, done_out = 0;
    bool counts_known = true;
    std::optional<FlowCounts> live;
    std::string last_exit;
    bool stop_sent = false;
    Clock::time_point stop_sent_at;
    bool kill_sent = false;
    int64_t started_wall_ns = 0;
};

// A message count summed over processes; unknown once one of them cannot tell.
struct Count {
    uint64_t n = 0;
    bool known = true;
    void add(uint64_t value, bool value_known) {
        n += value;
        known &= value_known;
    }
    std::string text() const { return known ? std::to_string(n) : "an unknown number of"; }
    std::string short_text() const { return known ? std::to_string(n) : "?"; }
    bool operator==(const Count&) const = default;
};

struct Group {
    const GroupSpec* spec = nullptr;
    bool terminating = false;
    bool finished = false;
    bool draining = false;
    Clock::time_point drain_started;
    Clock::time_point last_change;
    Count last_in;
    Clock::time_point next_poll;
};

std::string describe_exit(int status) {
    if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    return "ended";
}

double seconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }

class Supervisor {
public:
    Supervisor(const Plan& plan, const SupervisorOptions& options, Log& log)
        : m_plan(plan), m_options(options), m_log(log) {
        for (const auto& spec : plan.groups) {
            Group group;
            group.spec = &spec;
            m_groups.push_back(group);
        }
        for (size_t g = 0; g < plan.groups.size(); ++g)
            for (size_t p : plan.groups[g].processes) {
                Process process;
                process.spec = &plan.processes[p];
                process.group = g;
                process.delay_ns = process.spec->restart.delay_ns;
                process.final_path = fmt::format("{}/final/{}.prom", options.runtime_dir, p);
                m_processes.push_back(std::move(process));
            }
    }

    int run() {
        std::filesystem::create_directories(m_options.runtime_dir + "/final");
        sigset_t signals;
        sigemptyset(&signals);
        for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
        sigprocmask(SIG_BLOCK, &signals, &m_old_mask);
        m_signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
        if (m_signal_fd < 0) throw Error(ExitCode::software, errno_text("signalfd", errno));

        // Readers first, so that sources find their peers; ZeroMQ would queue either way.
        for (size_t i = m_processes.size(); i-- > 0;) start(m_processes[i]);
        write_state();
        m_log.info("channel up: {} processes in {}; SIGTERM or Ctrl-C drains it", m_processes.size(),
                   m_options.runtime_dir);

        while (!all_finished()) {
            std::vector<pollfd> fds;
            fds.push_back({m_signal_fd, POLLIN, 0});
            std::vector<size_t> owners;
            for (size_t i = 0; i < m_processes.size(); ++i)
                if (m_processes[i].stderr_fd >= 0) {
                    fds.push_back({m_processes[i].stderr_fd, POLLIN, 0});
                    owners.push_back(i);
                }
            int ready = ::poll(fds.data(), fds.size(), timeout_ms());
            if (ready < 0 && errno != EINTR) throw Error(ExitCode::software, errno_text("poll", errno));
            if (ready > 0) {
                for (size_t k = 1; k < fds.size(); ++k)
                    if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) read_stderr(m_processes[owners[k - 1]]);
                if (fds[0].revents & POLLIN) handle_signals();
            }
            reap();
            restart_due();
            drain();
            kill_stragglers();
            finish_groups();
            if (m_state_dirty || Clock::now() - m_state_written >= k_idle_poll) write_state();
        }
        write_state();
        sigprocmask(SIG_SETMASK, &m_old_mask, nullptr);
        ::close(m_signal_fd);
        if (m_failed) {
            m_log.error("the channel ended with a failed stage (see above)");
            return static_cast<int>(ExitCode::unavailable);
        }
        m_log.info("the channel ended: every stage drained and stopped");
        return 0;
    }

private:
    int timeout_ms() const {
        auto now = Clock::now();
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(k_idle_poll);
        for (const auto& p : m_processes)
            if (p.state == State::backoff)
                wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(p.restart_at - now));
        for (const auto& g : m_groups)
            if (g.draining && !g.terminating) wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(k_drain_poll));
            else if (g.terminating && !g.finished) wait = std::min(wait, std::chrono::milliseconds(100));
        return static_cast<int>(std::max<int64_t>(0, wait.count()));
    }

    bool all_finished() const {
        return std::all_of(m_groups.begin(), m_groups.end(), [](const Group& g) { return g.finished; });
    }

    // ---- processes ---------------------------------------------------------------------------

    void start(Process& p) {
        const ProcessSpec& spec = *p.spec;
        int pipe_fds[2];
        if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw Error(ExitCode::software, errno_text("pipe2", errno));
        std::string stdout_path = spec.stdout_path.empty() ? "/dev/null"
                                  : spec.stdout_path.starts_with('/') ? spec.stdout_path
                                                                      : m_options.manifest_dir + "/" + spec.stdout_path;
        int out_fd = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out_fd < 0) {
            ::close(pipe_fds[0]);
            ::close(pipe_fds[1]);
            m_log.error("{}: cannot open its stdout {}: {}", spec.name, stdout_path, std::strerror(errno));
            p.state = State::failed;
            m_failed = true;
            m_state_dirty = true;
            return;
        }
        int in_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        // The environment: ours without JOURNAL_STREAM (the child's stderr is our pipe, not
        // the journal), the stage's, and where to leave its final counters.
        std::vector<std::string> env_strings;
        for (char** e = environ; *e; ++e) {
            std::string_view entry = *e;
            std::string_view key = entry.substr(0, entry.find('='));
            if (key == "JOURNAL_STREAM" || key == cli::k_final_metrics_env) continue;
            bool overridden = false;
            for (const auto& [name, value] : spec.env) overridden |= key == name;
            if (!overridden) env_strings.emplace_back(entry);
        }
        for (const auto& [name, value] : spec.env) env_strings.push_back(name + "=" + value);
        env_strings.push_back(std::string(cli::k_final_metrics_env) + "=" + p.final_path);
        std::vector<char*> envp;
        for (auto& s : env_strings) envp.push_back(s.data());
        envp.push_back(nullptr);
        std::vector<char*> argv;
        for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        std::filesystem::remove(p.final_path);

        pid_t parent = ::getpid();
        pid_t pid = ::fork();
        if (pid < 0) throw Error(ExitCode::software, errno_text("fork", errno));
        if (pid == 0) {
            // Its own process group: a Ctrl-C on the terminal reaches mh-route only, which
            // then stops the channel in order. If mh-route dies, the stage gets SIGTERM.
            ::setpgid(0, 0);
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (::getppid() != parent) ::_exit(1);
            // Relative paths in a manifest (a --db, a stdout file) start at its directory.
            if (::chdir(m_options.manifest_dir.c_str()) != 0) {
                std::string message = fmt::format("cannot enter {}: {}\n", m_options.manifest_dir, std::strerror(errno));
                [[maybe_unused]] auto ignored = ::write(pipe_fds[1], message.data(), message.size());
                ::_exit(127);
            }
            ::dup2(in_fd, STDIN_FILENO);
            ::dup2(out_fd, STDOUT_FILENO);
            ::dup2(pipe_fds[1], STDERR_FILENO);
            for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) std::signal(s, SIG_DFL);
            sigprocmask(SIG_SETMASK, &m_old_mask, nullptr);
            ::execve(argv[0], argv.data(), envp.data());
            std::string message = fmt::format("cannot run {}: {}\n", spec.argv[0], std::strerror(errno));
            [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, message.data(), message.size());
            ::_exit(127);
        }
        ::close(pipe_fds[1]);
        ::close(out_fd);
        ::close(in_fd);
        ::fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
        p.pid = pid;
        p.stderr_fd = pipe_fds[0];
        p.state = State::running;
        p.started = Clock::now();
        p.started_wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        p.metrics_port = 0;
        p.live.reset();
        p.stop_sent = p.kill_sent = false;
        m_state_dirty = true;
        m_log.debug("{}: started as pid {}: {}", spec.name, pid, manifest::join_command(spec.argv));
    }

    void read_stderr(Process& p) {
        char buffer[16384];
        for (;;) {
            ssize_t n = ::read(p.stderr_fd, buffer, sizeof buffer);
            if (n > 0) {
                p.partial.append(buffer, static_cast<size_t>(n));
                forward_lines(p, false);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return;
            // EOF (or an error): the process closed its stderr, normally because it ended.
            forward_lines(p, true);
            ::close(p.stderr_fd);
            p.stderr_fd = -1;
            return;
        }
    }

    void forward_lines(Process& p, bool at_end) {
        size_t start = 0;
        for (;;) {
            size_t end = p.partial.find('\n', start);
            if (end == std::string::npos) {
                if (!at_end && p.partial.size() - start < k_max_line_bytes) break;
                end = p.partial.size();
                if (end == start) break;
            }
            std::string_view line(p.partial.data() + start, end - start);
            if (size_t at = line.find(k_port_marker); at != std::string_view::npos && p.metrics_port == 0) {
                std::string_view digits = line.substr(at + k_port_marker.size());
                int port = 0;
                std::from_chars(digits.data(), digits.data() + digits.size(), port);
                if (port > 0) {
                    p.metrics_port = port;
                    m_state_dirty = true;
                }
            }
            std::string out = fmt::format("{}: {}\n", p.spec->name, line);
            [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, out.data(), out.size());
            start = std::min(end + 1, p.partial.size());
            if (end >= p.partial.size()) break;
        }
        p.partial.erase(0, start);
    }

    Process* find_pid(pid_t pid) {
        for (auto& p : m_processes)
            if (p.pid == pid) return &p;
        return nullptr;
    }

    void reap() {
        int status = 0;
        pid_t pid;
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
            Process* found = find_pid(pid);
            if (!found) continue;
            ended(*found, status);
        }
    }

    void ended(Process& p, int status) {
        if (p.stderr_fd >= 0) read_stderr(p);  // what it said last
        if (p.stderr_fd >= 0) {
            forward_lines(p, true);
            ::close(p.stderr_fd);
            p.stderr_fd = -1;
        }
        p.pid = 0;
        p.live.reset();
        m_state_dirty = true;
        if (auto counts = read_final_counts(p.final_path)) {
            p.done_in += counts->in;
            p.done_out += counts->out;
            std::filesystem::remove(p.final_path);
        } else {
            p.counts_known = false;
        }
        bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        p.last_exit = describe_exit(status);
        Group& group = m_groups[p.group];
        const auto& restart = p.spec->restart;
        if (p.stop_sent || group.terminating) {
            // A program without a handler for the SIGTERM that stopped it (mosquitto_pub) dies
            // of it: that is how it stops, as systemd also counts it.
            clean |= p.stop_sent && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM;
            p.state = clean ? State::exited : State::failed;
            if (clean)
                m_log.debug("{}: stopped", p.spec->name);
            else {
                m_log.error("{}: ended with {} while stopping", p.spec->name, p.last_exit);
                m_failed = true;
            }
            return;
        }
        bool restart_it = restart.policy == manifest::RestartPolicy::always ||
                          (restart.policy == manifest::RestartPolicy::on_failure && !clean);
        if (!restart_it) {
            p.state = clean ? State::exited : State::failed;
            if (clean)
                m_log.info("{}: finished", p.spec->name);
            else {
                m_log.error("{}: failed with {}; restart = {}, so it stays down", p.spec->name, p.last_exit,
                            manifest::restart_policy_name(restart.policy));
                m_failed = true;
            }
            return;
        }
        auto now = Clock::now();
        if (now - p.started >= k_stable_run) p.delay_ns = restart.delay_ns;
        p.restart_at = now + std::chrono::nanoseconds(p.delay_ns);
        p.state = State::backoff;
        m_log.warn("{}: {} with {}; restarting it in {:.3g} s", p.spec->name, clean ? "ended" : "failed", p.last_exit,
                   seconds(p.delay_ns));
        p.delay_ns = std::min(p.delay_ns * 2, restart.max_delay_ns);
    }

    void restart_due() {
        auto now = Clock::now();
        for (auto& p : m_processes)
            if (p.state == State::backoff && now >= p.restart_at && !m_groups[p.group].terminating) {
                ++p.restarts;
                start(p);
            }
    }

    // ---- stopping ----------------------------------------------------------------------------

    void handle_signals() {
        signalfd_siginfo info;
        while (::read(m_signal_fd, &info, sizeof info) == sizeof info) {
            int signal = static_cast<int>(info.ssi_signo);
            if (signal == SIGCHLD) continue;  // reap() runs after every wake-up
            ++m_stop_requests;
            if (m_stop_requests == 1) {
                m_log.info("{}: draining the channel, from the sources down (again to stop every stage now)",
                           strsignal(signal));
                for (size_t g = 0; g < m_groups.size(); ++g)
                    if (is_source(*m_groups[g].spec)) terminate(g, "the channel is stopping");
            } else if (m_stop_requests == 2) {
                m_log.warn("{} again: stopping every stage now (once more to kill them)", strsignal(signal));
                for (size_t g = 0; g < m_groups.size(); ++g) terminate(g, "");
            } else {
                m_log.warn("{} a third time: killing every stage", strsignal(signal));
                for (auto& p : m_processes)
                    if (p.pid) ::kill(p.pid, SIGKILL);
            }
        }
    }

    // A group with no input at all: it ends by itself, or when the channel is told to stop.
    static bool is_source(const GroupSpec& group) { return group.upstream.empty() && !group.remote_input; }

    void terminate(size_t g, std::string_view why) {
        Group& group = m_groups[g];
        if (group.finished) return;
        if (!group.terminating && !why.empty()) m_log.info("stopping {}: {}", group.spec->name, why);
        group.terminating = true;
        auto now = Clock::now();
        for (size_t i : group.spec->processes) {
            Process& p = process_of(i);
            if (p.pid && !p.stop_sent) {
                ::kill(p.pid, SIGTERM);
                p.stop_sent = true;
                p.stop_sent_at = now;
                p.state = State::stopping;
            } else if (p.state == State::backoff || p.state == State::pending) {
                p.state = State::exited;
            }
        }
        m_state_dirty = true;
    }

    Process& process_of(size_t plan_index) {
        for (auto& p : m_processes)
            if (p.spec == &m_plan.processes[plan_index]) return p;
        throw Error(ExitCode::software, "process not in the plan");
    }

    // A process that ignores SIGTERM past drain_timeout is killed.
    void kill_stragglers() {
        auto now = Clock::now();
        for (auto& p : m_processes)
            if (p.pid && p.stop_sent && !p.kill_sent &&
                now - p.stop_sent_at >= std::chrono::nanoseconds(m_options.drain_timeout_ns)) {
                m_log.warn("{}: still running {:.3g} s after SIGTERM: killing it", p.spec->name,
                           seconds(m_options.drain_timeout_ns));
                ::kill(p.pid, SIGKILL);
                p.kill_sent = true;
            }
    }

    void finish_groups() {
        for (auto& group : m_groups) {
            if (group.finished) continue;
            bool done = true;
            for (size_t i : group.spec->processes) done &= is_done(process_of(i).state);
            if (done) {
                group.finished = true;
                m_state_dirty = true;
            }
        }
    }

    // ---- draining ----------------------------------------------------------------------------

    void drain() {
        auto now = Clock::now();
        for (size_t g = 0; g < m_groups.size(); ++g) {
            Group& group = m_groups[g];
            if (group.finished || group.terminating || is_source(*group.spec)) continue;
            // Input from another host (up --host) ends only when this host is told to stop,
            // and then its count is unknown here: the group drains when its input is quiet.
            bool upstream_done = !group.spec->remote_input || m_stop_requests > 0;
            for (size_t u : group.spec->upstream) upstream_done &= m_groups[u].finished;
            if (!upstream_done) continue;
            if (now < group.next_poll) continue;
            group.next_poll = now + k_drain_poll;

            // What the upstream sent, and what this group took in, when the counts can tell.
            Count expected;
            if (group.spec->remote_input) expected.add(0, false);
            for (size_t u : group.spec->upstream)
                for (size_t i : m_groups[u].spec->processes) {
                    const Process& p = process_of(i);
                    expected.add(p.done_out, p.counts_known);
                }
            Count taken;
            for (size_t i : group.spec->processes) {
                Process& p = process_of(i);
                taken.add(p.done_in, p.counts_known);
                if (p.pid) {
                    p.live = p.metrics_port ? scrape(p.metrics_port, k_scrape_timeout_ms) : std::nullopt;
                    taken.add(p.live ? p.live->in : 0, p.live.has_value());
                } else if (p.state == State::backoff) {
                    taken.known = false;
                }
            }
            if (!group.draining) {
                group.draining = true;
                group.drain_started = now;
                group.last_change = now;
                group.last_in = taken;
                if (group.spec->remote_input)
                    m_log.info("draining {}: it takes in what other hosts still send until its input has been "
                               "quiet for {:.3g} s",
                               group.spec->name, seconds(m_options.drain_quiet_ns));
                else
                    m_log.info("draining {}: its upstream ended having sent {} messages", group.spec->name,
                               expected.text());
            }
            if (taken != group.last_in) {
                group.last_in = taken;
                group.last_change = now;
            }
            bool quiet = now - group.last_change >= std::chrono::nanoseconds(m_options.drain_quiet_ns);
            bool both_known = expected.known && taken.known;
            if (both_known && taken.n == expected.n) {
                terminate(g, fmt::format("it took in all {} messages its upstream sent", expected.n));
            } else if (quiet && (!both_known || taken.n > expected.n)) {
                terminate(g, fmt::format("its input has been quiet for {:.3g} s and the counts cannot tell more "
                                         "(took in {} of {})",
                                         seconds(m_options.drain_quiet_ns), taken.short_text(), expected.short_text()));
            } else if (now - group.drain_started >= std::chrono::nanoseconds(m_options.drain_timeout_ns)) {
                m_log.warn("{} took in {} of the {} messages its upstream sent within drain_timeout ({:.3g} s): "
                           "stopping it anyway",
                           group.spec->name, taken.short_text(), expected.short_text(),
                           seconds(m_options.drain_timeout_ns));
                terminate(g, "drain_timeout");
            }
        }
    }

    // ---- the state file ------------------------------------------------------------------------

    void write_state() {
        std::string text =
            "name\tgroup\tstate\tpid\trestarts\tmetrics_port\tstarted_ns\tlast_exit\tended_in\tended_out\n";
        for (const auto& p : m_processes)
            text += fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", p.spec->name, p.spec->group,
                                state_name(p.state), p.pid, p.restarts, p.metrics_port, p.started_wall_ns,
                                p.last_exit.empty() ? "-" : p.last_exit, p.done_in, p.done_out);
        std::string path = m_options.runtime_dir + "/" + k_state_file;
        std::string temporary = path + ".tmp";
        int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
            ::close(fd);
            if (ok) ::rename(temporary.c_str(), path.c_str());
        }
        m_state_dirty = false;
        m_state_written = Clock::now();
    }

    const Plan& m_plan;
    const SupervisorOptions& m_options;
    Log& m_log;
    std::vector<Group> m_groups;
    std::vector<Process> m_processes;
    sigset_t m_old_mask{};
    int m_signal_fd = -1;
    int m_stop_requests = 0;
    bool m_failed = false;
    bool m_state_dirty = true;
    Clock::time_point m_state_written;
};

}  // namespace

int supervise(const Plan& plan, const SupervisorOptions& options, Log& log) {
    return Supervisor(plan, options, log).run();
}

}  // namespace mh::route
