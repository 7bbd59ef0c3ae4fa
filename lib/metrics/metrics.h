// Counters and latency histograms, rendered in the Prometheus text format and served
// over HTTP on --metrics HOST:PORT. main() owns the Registry; components borrow it.
#pragma once

#include "core/log.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mh::metrics {

class Counter {
public:
    void add(uint64_t n = 1) { m_value.fetch_add(n, std::memory_order_relaxed); }
    uint64_t value() const { return m_value.load(std::memory_order_relaxed); }

private:
    std::atomic<uint64_t> m_value{0};
};

// Latency in seconds with fixed buckets from 10 us to 10 s.
class Histogram {
public:
    static constexpr std::array<double, 13> k_bucket_seconds = {
        1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
    void observe_ns(int64_t ns);
    uint64_t count() const { return m_count.load(std::memory_order_relaxed); }

private:
    friend class Registry;
    std::array<std::atomic<uint64_t>, k_bucket_seconds.size()> m_buckets{};
    std::atomic<uint64_t> m_count{0};
    std::atomic<uint64_t> m_sum_ns{0};
};

class Registry {
public:
    // `labels` is Prometheus label text without braces, e.g. reason="malformed".
    // References stay valid for the registry's lifetime.
    Counter& counter(const std::string& name, const std::string& help, const std::string& labels = "");
    Histogram& histogram(const std::string& name, const std::string& help);
    std::string render() const;

private:
    struct Entry {
        std::string name, help, labels;
        std::unique_ptr<Counter> counter;
        std::unique_ptr<Histogram> histogram;
    };
    static void render_entry(const Entry& entry, std::string& out);

    mutable std::mutex m_mutex;
    std::deque<Entry> m_entries;
};

// Serves GET /metrics (any path, in fact) on a thread of its own until destroyed.
class Server {
public:
    // `address` is HOST:PORT or :PORT; port 0 picks a free one (see port()).
    Server(const Registry& registry, const std::string& address, Log& log);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;
    int port() const { return m_port; }

private:
    void serve();

    const Registry& m_registry;
    Log& m_log;
    int m_listen_fd = -1;
    int m_wake_pipe[2] = {-1, -1};
    int m_port = 0;
    std::thread m_thread;
};

}  // namespace mh::metrics
