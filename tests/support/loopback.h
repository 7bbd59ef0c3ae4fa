// A tiny plaintext TCP harness for protocol tests: a listener on 127.0.0.1 with a port the
// kernel picks, and real client programs (mosquitto_pub, curl, ...) run as children with
// their output captured. The protocol engines under test are transport-free; this is the
// transport, kept as small as a test needs.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace mh::test {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : m_fd(fd) {}
    Fd(Fd&& other) noexcept : m_fd(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            reset();
            m_fd = other.release();
        }
        return *this;
    }
    ~Fd() { reset(); }
    int get() const { return m_fd; }
    explicit operator bool() const { return m_fd >= 0; }
    int release() {
        int fd = m_fd;
        m_fd = -1;
        return fd;
    }
    void reset() {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = -1;
    }

private:
    int m_fd = -1;
};

inline void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Listens on 127.0.0.1, on a port of the kernel's choosing (never a fixed one: tests run
// side by side).
class LoopbackListener {
public:
    LoopbackListener() : m_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        if (!m_fd) throw std::runtime_error("socket failed");
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = 0;
        if (::bind(m_fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
            ::listen(m_fd.get(), 16) != 0)
            throw std::runtime_error("bind/listen on 127.0.0.1:0 failed");
        socklen_t length = sizeof(address);
        ::getsockname(m_fd.get(), reinterpret_cast<sockaddr*>(&address), &length);
        m_port = ntohs(address.sin_port);
    }

    int port() const { return m_port; }

    // One connection, non-blocking, or an empty Fd when none came within `timeout`.
    Fd accept(std::chrono::milliseconds timeout) {
        pollfd p{m_fd.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return Fd();
        Fd connection(::accept4(m_fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        return connection;
    }

private:
    Fd m_fd;
    int m_port = 0;
};

// A client program run as a child, stdout and stderr captured through pipes.
class ChildProcess {
public:
    explicit ChildProcess(const std::vector<std::string>& argv) {
        int out[2], err[2];
        if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        posix_spawn_file_actions_adddup2(&actions, err[1], 2);
        std::vector<char*> args;
        for (auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
        args.push_back(nullptr);
        int rc = ::posix_spawnp(&m_pid, args[0], &actions, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(out[1]);
        ::close(err[1]);
        m_stdout = Fd(out[0]);
        m_stderr = Fd(err[0]);
        if (rc != 0) throw std::runtime_error("cannot run " + argv[0]);
        set_nonblocking(m_stdout.get());
        set_nonblocking(m_stderr.get());
    }
    ~ChildProcess() {
        if (m_pid > 0 && !m_status) {
            ::kill(m_pid, SIGKILL);
            ::waitpid(m_pid, nullptr, 0);
        }
    }
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    int stdout_fd() const { return m_stdout.get(); }

    // Reads what the child wrote so far (non-blocking).
    void collect() {
        drain(m_stdout, m_out);
        drain(m_stderr, m_err);
    }
    const std::string& out() const { return m_out; }
    const std::string& err() const { return m_err; }

    // The exit status once it has exited (without waiting), else nullopt.
    std::optional<int> poll_exit() {
        if (m_status) return m_status;
        int status;
        if (::waitpid(m_pid, &status, WNOHANG) == m_pid)
            m_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return m_status;
    }

    // Waits for the exit, collecting output, up to `timeout`; nullopt if it is still running.
    std::optional<int> wait(std::chrono::milliseconds timeout) {
        auto end = std::chrono::steady_clock::now() + timeout;
        while (!poll_exit() && std::chrono::steady_clock::now() < end) {
            collect();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        collect();
        return m_status;
    }

private:
    static void drain(Fd& fd, std::string& into) {
        char buffer[4096];
        ssize_t n;
        while (fd && (n = ::read(fd.get(), buffer, sizeof(buffer))) > 0) into.append(buffer, n);
    }
    pid_t m_pid = -1;
    Fd m_stdout, m_stderr;
    std::string m_out, m_err;
    std::optional<int> m_status;
};

}  // namespace mh::test
