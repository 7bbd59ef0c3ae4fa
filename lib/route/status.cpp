// mh-route status: the state file `up` keeps, and two scrapes of every running process's
// metrics an interval apart, as a table.
#include "core/error.h"
#include "core/stop.h"
#include "route/route_tool.h"
#include "route/scrape.h"
#include "route/supervisor.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace mh::route {
namespace {

constexpr int k_scrape_timeout_ms = 1000;

struct Row {
    std::string name, group, state;
    long pid = 0;
    unsigned restarts = 0;
    int port = 0;
    int64_t started_ns = 0;
    std::string last_exit;
    uint64_t ended_in = 0, ended_out = 0;
    std::optional<FlowCounts> first, second;
};

std::vector<Row> read_state(const std::string& dir) {
    std::ifstream file(dir + "/" + k_state_file);
    if (!file)
        throw Error(ExitCode::unavailable, fmt::format("the channel is not up in {} (no {}): start it with mh-route up",
                                                       dir, k_state_file));
    std::vector<Row> rows;
    std::string line;
    std::getline(file, line);  // the header
    while (std::getline(file, line)) {
        std::vector<std::string> cells;
        std::stringstream stream(line);
        std::string cell;
        while (std::getline(stream, cell, '\t')) cells.push_back(cell);
        if (cells.size() < 10) continue;
        Row row;
        row.name = cells[0];
        row.group = cells[1];
        row.state = cells[2];
        row.pid = std::atol(cells[3].c_str());
        row.restarts = static_cast<unsigned>(std::atol(cells[4].c_str()));
        row.port = std::atoi(cells[5].c_str());
        row.started_ns = std::atoll(cells[6].c_str());
        row.last_exit = cells[7];
        row.ended_in = std::strtoull(cells[8].c_str(), nullptr, 10);
        row.ended_out = std::strtoull(cells[9].c_str(), nullptr, 10);
        rows.push_back(std::move(row));
    }
    return rows;
}

std::string rate(const Row& row, uint64_t FlowCounts::*counter, double seconds) {
    if (!row.first || !row.second || seconds <= 0) return "-";
    double per_second = static_cast<double>((*row.second).*counter - (*row.first).*counter) / seconds;
    return fmt::format("{:.0f}", per_second);
}

std::string count(const Row& row, uint64_t FlowCounts::*counter) {
    return row.second ? std::to_string((*row.second).*counter) : "-";
}

// In and out over the process's life: the incarnations that ended, and the running one.
std::string total(const Row& row, uint64_t FlowCounts::*counter, uint64_t ended) {
    if (row.second) return std::to_string((*row.second).*counter + ended);
    return row.state == "exited" || row.state == "failed" || row.state == "backoff" ? std::to_string(ended) : "-";
}

std::string uptime(const Row& row) {
    if (row.state != "running" || row.started_ns == 0) return "-";
    int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    int64_t s = (now_ns - row.started_ns) / 1'000'000'000;
    if (s < 120) return fmt::format("{}s", s);
    if (s < 7200) return fmt::format("{}m", s / 60);
    return fmt::format("{}h", s / 3600);
}

std::string render(const std::vector<Row>& rows, double seconds, bool up_running, const std::string& channel) {
    std::vector<std::vector<std::string>> table = {
        {"PROCESS", "STATE", "PID", "RESTARTS", "IN/S", "OUT/S", "IN", "OUT", "DROPPED", "ERRORS", "UPTIME", "LAST EXIT"}};
    for (const auto& row : rows)
        table.push_back({row.name, row.state, row.pid ? std::to_string(row.pid) : "-", std::to_string(row.restarts),
                         rate(row, &FlowCounts::in, seconds), rate(row, &FlowCounts::out, seconds),
                         total(row, &FlowCounts::in, row.ended_in), total(row, &FlowCounts::out, row.ended_out),
                         count(row, &FlowCounts::dropped),
                         count(row, &FlowCounts::errors), uptime(row), row.last_exit});
    std::vector<size_t> widths(table[0].size(), 0);
    for (const auto& line : table)
        for (size_t c = 0; c < line.size(); ++c) widths[c] = std::max(widths[c], line[c].size());
    std::string out = fmt::format("channel {}: {}\n", channel, up_running ? "up" : "not running (the last state it left)");
    for (const auto& line : table) {
        std::string text;
        for (size_t c = 0; c < line.size(); ++c) {
            // Names and states left, numbers right.
            bool left = c <= 1 || c == line.size() - 1;
            text += left ? fmt::format("{:<{}}", line[c], widths[c]) : fmt::format("{:>{}}", line[c], widths[c]);
            if (c + 1 < line.size()) text += "  ";
        }
        while (!text.empty() && text.back() == ' ') text.pop_back();
        out += text + "\n";
    }
    return out;
}

bool up_is_running(const std::string& dir) {
    std::ifstream file(dir + "/" + k_pid_file);
    pid_t pid = 0;
    return file >> pid && pid > 0 && ::kill(pid, 0) == 0;
}

}  // namespace

int run_status(const StatusCommand& command, Log& log, const StopFlag& stop) {
    auto loaded = load_checked(command.file, log, Programs::skip);
    std::string dir = runtime_dir_for(loaded.manifest, command.runtime_dir, command.host);
    auto interval = std::chrono::duration<double>(command.interval_s);
    do {
        auto rows = read_state(dir);
        bool running = up_is_running(dir);
        auto first_at = std::chrono::steady_clock::now();
        for (auto& row : rows)
            if (running && row.state == "running" && row.port) row.first = scrape(row.port, k_scrape_timeout_ms);
        std::this_thread::sleep_for(interval);
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - first_at).count();
        for (auto& row : rows)
            if (row.first) row.second = scrape(row.port, k_scrape_timeout_ms);
        std::string text = render(rows, seconds, running, loaded.manifest.name);
        if (command.watch) text = "\x1b[H\x1b[2J" + text;  // home and clear, as watch(1) does
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
    } while (command.watch && !stop.load());
    return 0;
}

}  // namespace mh::route
