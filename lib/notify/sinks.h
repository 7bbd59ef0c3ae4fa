// Where notifications go. Each sink is driven by one worker thread of its own (see
// delivery.h), so a slow or dead one holds up nobody else; deliver() may block up to its
// timeout. An outcome says delivered, try again later, or give up at once (a receiver
// that refuses the request itself, such as HTTP 400, will refuse it again).
//
//   webhook  HTTP(S) POST of the JSON; 2xx is delivered; 408, 429, 5xx and transport
//            errors are retried; other statuses are permanent. X-Mh-Signature carries
//            sha256=<hex HMAC-SHA256 of the body> with --secret.
//   exec     /bin/sh -c CMD with the JSON on stdin and MH_* variables; exit 0 is delivered.
//   smtp     one mail per notification (plain SMTP, or STARTTLS required with --starttls).
//   command  a `command` message to an endpoint's command input (ZeroMQ), addressed to the
//            alert's gateway and source; not sent for resolutions.
//   out      the notification itself as a frame (--out), barriers included.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/stop.h"
#include "notify/incident.h"
#include "wire/frame.h"
#include "wire/stream.h"

namespace mh::zmq {
class Context;
struct Endpoint;
}  // namespace mh::zmq

namespace mh::notify {

struct Outcome {
    enum class Kind { delivered, retry, permanent } kind = Kind::delivered;
    std::string reason;  // why it failed, for logs and the dead-letter
};

// One notification as sinks see it; `json` is its JSON form without a newline.
struct NotificationView {
    wire::Frame frame;
    schema::Message::Reader message;
    const std::string& json;
};

class Sink {
  public:
    virtual ~Sink() = default;
    // "webhook https://...": for logs, and (hashed) what names its queue in --state.
    virtual std::string name() const = 0;
    virtual Outcome deliver(const NotificationView& notification) = 0;
    virtual bool wants(Event) const { return true; }
    virtual bool wants_barriers() const { return false; }
    virtual void barrier(const wire::Frame&) {}
    // Whether deliver() reads NotificationView::json (the worker skips encoding it otherwise).
    virtual bool needs_json() const { return true; }
    // Sends what deliver() and barrier() buffered; the worker calls it when its queue has
    // nothing due, before the delivered rows are deleted from the state.
    virtual void flush() {}
};

// Hex HMAC-SHA256 of `body` with `secret`, as X-Mh-Signature carries it after "sha256=".
std::string hmac_sha256_hex(std::string_view secret, std::string_view body);

struct WebhookConfig {
    std::string url;
    std::vector<std::string> headers;  // "Name: value"
    std::string secret;                // empty: no signature
    int64_t timeout_ns = 0;
    std::string cacert;              // a CA file to trust instead of the system's
    const StopFlag* stop = nullptr;  // a stop request cuts an attempt short
};
std::unique_ptr<Sink> make_webhook(const WebhookConfig& config);

std::unique_ptr<Sink> make_exec(const std::string& command, int64_t timeout_ns,
                                const StopFlag* stop);

struct SmtpConfig {
    std::string server;  // HOST:PORT
    std::vector<std::string> to;
    std::string from;
    bool starttls = false;
    int64_t timeout_ns = 0;
    std::string cacert;
    const StopFlag* stop = nullptr;
};
std::unique_ptr<Sink> make_smtp(const SmtpConfig& config);

// `command_name`: the command field of the message; empty: the alert's rule.
std::unique_ptr<Sink> make_command(zmq::Context& context, const std::string& spec,
                                   const std::string& command_name, int64_t timeout_ns,
                                   wire::FrameLimits limits);

// Takes ownership of an output opened by the tool (a pipe, file or ZeroMQ sink).
std::unique_ptr<Sink> make_out(std::string spec, std::unique_ptr<wire::FrameSink> sink);

}  // namespace mh::notify
