// mh-notify: tells people, partner systems and machines about incidents, once per incident
// and reliably. The input thread evaluates --when (and --resolve-when) on every message;
// matches go through a bounded queue to the engine thread, which keeps the incidents
// (incident.h), builds notifications (notification.h) and stores them with the incident
// state in one LMDB transaction; a worker thread per sink delivers them (delivery.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/tool.h"

namespace mh::notify {

constexpr std::string_view k_default_when = "kind == \"alert\"";
constexpr std::string_view k_default_template = "{source}: {rule} {state}";
constexpr std::string_view k_default_resolve_after = "5m";
constexpr size_t k_default_queue = 8192;
constexpr size_t k_default_max_pending = 100000;  // per sink

struct NotifyOptions {
    cli::CommonOptions common;
    std::string when{k_default_when};
    std::vector<std::string> key = {"rule", "source"};
    std::string text{k_default_template};
    std::string every;          // empty: told once per incident
    std::string resolve_after;  // empty: 5m, unless --resolve-when is given
    std::string resolve_when;
    std::string flap;  // hold-down of resolutions; empty: none

    std::vector<std::string> webhooks;
    std::vector<std::string> headers;
    std::string secret;
    std::string secret_file;
    std::string cacert;
    std::string timeout = "10s";
    std::vector<std::string> execs;
    std::vector<std::string> smtp;
    std::vector<std::string> mail_to;
    std::string mail_from = "mh-notify@localhost";
    bool starttls = false;
    std::vector<std::string> commands;
    std::string command_name;

    std::string state;  // LMDB directory; empty: a temporary one
    std::string retry_for = "1h";
    uint32_t retry_max = 0;
    std::string backoff = "1s";
    std::string backoff_max = "5m";
    size_t queue = k_default_queue;
    size_t max_pending = k_default_max_pending;
};

int run(const NotifyOptions& options, cli::ToolContext& context);

}  // namespace mh::notify
