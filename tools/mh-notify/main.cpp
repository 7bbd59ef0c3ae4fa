// mh-notify: tell people, partner systems and machines about incidents, once per incident
// and reliably. The work is in lib/notify.
#include "notify/notify.h"

int main(int argc, char** argv) {
    mh::notify::NotifyOptions o;
    CLI::App app{
        "Group matching messages (alerts by default) into incidents and notify each incident once, "
        "its "
        "repeats at most --every, and its resolution: by webhook, command, mail, a command message "
        "back to "
        "the device, or as messages. Deliveries are queued durably and retried. See man mh-notify.",
        "mh-notify"};
    mh::cli::add_common_options(app, o.common, mh::cli::Streams::in_and_out);
    app.get_option("--out")->description(
        "Notifications as messages (kind notification), repeatable: a file, - (stdout) or an "
        "endpoint; "
        "barriers pass through here");
    app.get_option("--dead-letter")
        ->description(
            "Where notifications go after their retry budget (with fields reason, sink, attempts), "
            "and garbled "
            "input frames");
    app.add_option("--when", o.when, "Which messages notify (an expression)")
        ->capture_default_str();
    app.add_option("--key", o.key,
                   "Names (headers or fields) whose values make an incident, comma list")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--template", o.text,
                   "The notification's text: {name} or {name:spec} placeholders, e.g. "
                   "'{source}: {temperature:.1f} °C above {limit}'")
        ->capture_default_str();
    app.add_option("--every", o.every,
                   "Re-notify an open incident at most this often (default: never)");
    app.add_option("--resolve-after", o.resolve_after,
                   "An incident resolves when no message matched for this long (default 5m without "
                   "--resolve-when)");
    app.add_option("--resolve-when", o.resolve_when,
                   "An incident resolves when a message of its key matches this");
    app.add_option("--flap", o.flap,
                   "Tell a resolution only after it held this long; a recurrence within it "
                   "continues the incident "
                   "silently");
    app.add_option("--webhook", o.webhooks,
                   "POST each notification as JSON to this http(s) URL, repeatable");
    app.add_option("--header", o.headers, "'Name: value' added to webhook requests, repeatable");
    app.add_option("--secret", o.secret,
                   "Sign webhook bodies: X-Mh-Signature: sha256=<hex HMAC-SHA256>");
    app.add_option("--secret-file", o.secret_file,
                   "Read the --secret from this file (kept out of ps)")
        ->excludes(app.get_option("--secret"));
    app.add_option("--cacert", o.cacert, "CA certificates (PEM) to trust for HTTPS and STARTTLS");
    app.add_option("--timeout", o.timeout, "Longest a delivery attempt may take")
        ->capture_default_str();
    app.add_option("--exec", o.execs,
                   "Run this shell command per notification: JSON on stdin, MH_* variables; exit 0 "
                   "is delivered");
    app.add_option("--smtp", o.smtp,
                   "Mail each notification through this SMTP server (HOST:PORT), repeatable");
    app.add_option("--mail-to", o.mail_to, "Recipient, repeatable");
    app.add_option("--mail-from", o.mail_from, "Sender address")->capture_default_str();
    app.add_flag("--starttls", o.starttls, "Require STARTTLS on the SMTP connection");
    app.add_option(
        "--command", o.commands,
        "Send a command message for the alert's gateway and source to this endpoint (mh-endpoint's "
        "command input), repeatable");
    app.add_option("--command-name", o.command_name,
                   "The command field of those messages (default: the rule)");
    app.add_option("--state", o.state,
                   "Directory of the LMDB state (incidents and pending deliveries); without it, "
                   "state ends with "
                   "the process");
    app.add_option("--retry-for", o.retry_for,
                   "Give up on a notification this long after its first failure (0: never)")
        ->capture_default_str();
    app.add_option("--retry-max", o.retry_max, "Give up after this many attempts (0: no limit)")
        ->capture_default_str()
        ->check(mh::cli::unsigned_number());
    app.add_option("--backoff", o.backoff,
                   "The first retry's delay, doubled each time, with jitter")
        ->capture_default_str();
    app.add_option("--backoff-max", o.backoff_max, "The longest delay between retries")
        ->capture_default_str();
    app.add_option("--max-pending", o.max_pending,
                   "Notifications that may wait per sink; more go to --dead-letter at once")
        ->capture_default_str()
        ->check(CLI::Range(size_t{1}, size_t{1} << 32));
    app.add_option("--queue", o.queue,
                   "Matching messages held for the engine before the input waits")
        ->capture_default_str()
        ->check(CLI::Range(size_t{1}, size_t{1} << 24));
    return mh::cli::run_main(app, o.common, argc, argv, [&](mh::cli::ToolContext& context) {
        return mh::notify::run(o, context);
    });
}
