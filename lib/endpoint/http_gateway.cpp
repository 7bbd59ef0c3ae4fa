#include "endpoint/http_gateway.h"

#include "wire/frame.h"

#include <capnp/serialize.h>
#include <fmt/format.h>

#include <cmath>

namespace mh::endpoint {

namespace {
http::Limits http_limits(const Connection& connection) {
    http::Limits limits;
    limits.max_body_bytes = connection.max_message_bytes() * k_body_messages_per_max_message;
    return limits;
}

http::BodyLimits body_limits(const Connection& connection) {
    http::BodyLimits limits;
    limits.frame_limits.max_frame_bytes = connection.max_message_bytes();
    return limits;
}

std::string counts(size_t accepted, size_t refused, std::string_view error = {}) {
    std::string out = fmt::format(R"({{"accepted":{},"refused":{})", accepted, refused);
    if (!error.empty()) {
        out += R"(,"error":)";
        json::append_string(out, error);
    }
    out += "}";
    return out;
}
}  // namespace

HttpGatewaySession::HttpGatewaySession(Connection& connection)
    : m_connection(connection), m_parser(http_limits(connection)), m_decoder(body_limits(connection)) {}

void HttpGatewaySession::respond(http::Response response) {
    if (response.close) {
        m_close_after = true;
        if (response.status >= 400) m_linger = true;
    }
    http::write(m_responses, response);
    m_connection.notify_when_flushed();
}

void HttpGatewaySession::flushed() {
    if (!m_responses.empty()) {
        m_connection.send(m_responses);
        m_responses.clear();
    }
    if (m_close_after) m_connection.close("HTTP connection done", m_linger ? Linger::yes : Linger::no);
}

size_t HttpGatewaySession::receive(std::span<const std::byte> data) {
    if (m_close_after) return data.size();
    m_parser.feed(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
    for (;;) {
        http::ParseStatus status = m_parser.next(m_request);
        if (status == http::ParseStatus::need_more) break;
        if (status == http::ParseStatus::error) {
            const auto& error = *m_parser.error();
            m_connection.refuse(error.status == 413 ? reason::oversized : reason::protocol,
                                fmt::format("HTTP {} from {}: {}", error.status, m_connection.peer(), error.reason));
            auto response = http::error_response(error);
            response.close = true;
            respond(std::move(response));
            break;
        }
        if (status == http::ParseStatus::headers) {
            // Refuse before the body is sent: no credentials, no upload.
            if (!authenticate(m_request)) break;
            if (m_request.expects_continue) {
                std::string out;
                http::write_continue(out);
                m_connection.send(out);
            }
            continue;
        }
        handle(m_request);
        if (m_close_after) break;
    }
    return data.size();
}

bool HttpGatewaySession::authenticate(const http::Request& request) {
    auto token = http::bearer_token(request);
    if (m_connection.gateway() && (!token || *token == m_token)) return true;
    if (!token) {
        m_connection.refuse(reason::auth, fmt::format("HTTP from {} without a bearer token or client certificate",
                                                      m_connection.peer()));
        auto response = http::error_response(401, "a bearer token or a client certificate is needed");
        response.headers.emplace_back("WWW-Authenticate", "Bearer");
        response.close = true;
        respond(std::move(response));
        return false;
    }
    if (m_connection.gateway()) {
        // A second token on the same connection must prove the same gateway.
        if (!m_connection.verify_token(*token)) {
            auto response = http::error_response(401, "the token is not valid for this connection's gateway");
            response.close = true;
            respond(std::move(response));
            return false;
        }
        m_token = *token;
        return true;
    }
    if (!m_connection.login_token("", *token)) {
        auto response = http::error_response(401, "token refused");
        response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        response.close = true;
        respond(std::move(response));
        return false;
    }
    m_token = *token;
    return true;
}

void HttpGatewaySession::handle(const http::Request& request) {
    if (!authenticate(request)) return;
    std::string_view path = request.path();
    if (path == k_messages_path) {
        if (request.method != "POST") {
            auto response = http::error_response(405, "POST messages here");
            response.headers.emplace_back("Allow", "POST");
            respond(std::move(response));
            return;
        }
        post_messages(request);
    } else if (path == k_commands_path) {
        if (request.method != "GET") {
            auto response = http::error_response(405, "GET commands here");
            response.headers.emplace_back("Allow", "GET");
            respond(std::move(response));
            return;
        }
        get_commands();
    } else if (path == k_replies_path) {
        if (request.method != "POST") {
            auto response = http::error_response(405, "POST replies here");
            response.headers.emplace_back("Allow", "POST");
            respond(std::move(response));
            return;
        }
        post_replies(request);
    } else {
        respond(http::error_response(404, "POST /v1/messages, GET /v1/commands or POST /v1/replies"));
    }
    if (!request.keep_alive) m_close_after = true;
}

void HttpGatewaySession::post_messages(const http::Request& request) {
    m_frames.clear();
    http::BodyResult result =
        m_decoder.decode(request.header("Content-Type").value_or(""), request.body, m_frames, Strict::yes);
    if (result.status != 0) {
        m_connection.refuse(result.status == 413 ? reason::oversized : reason::malformed,
                            fmt::format("HTTP body refused ({}): {}", result.status, result.first_error));
        respond(http::error_response(result.status, result.first_error.empty() ? "the body is not messages"
                                                                                : result.first_error));
        return;
    }
    // The whole body fits the quota, or none of it is taken: a 429 means "send it all again later".
    double wait = m_connection.quota_wait_seconds(static_cast<double>(result.accepted),
                                                  static_cast<double>(m_frames.size()));
    if (std::isinf(wait)) {
        m_connection.refuse(reason::quota, fmt::format("HTTP body of {} messages, more than the quota's burst",
                                                       result.accepted), result.accepted);
        respond(http::error_response(413, "more messages than the gateway's quota allows at once: send smaller bodies"));
        return;
    }
    if (wait > 0) {
        m_connection.refuse(reason::quota, fmt::format("HTTP body of {} messages over quota", result.accepted),
                            result.accepted);
        respond(http::error_response(429, "over quota", std::chrono::seconds(static_cast<int64_t>(std::ceil(wait)))));
        return;
    }
    size_t accepted = 0, refused = 0;
    Verdict last_refusal = Verdict::accepted;
    for (size_t at = 0; at < m_frames.size();) {
        auto rest = std::span<const std::byte>(m_frames).subspan(at);
        wire::FrameScan scan = wire::scan_frame(rest, {m_connection.max_message_bytes()});
        if (scan.status != wire::ScanStatus::complete) break;  // the decoder made them: cannot happen
        wire::Frame frame{reinterpret_cast<const capnp::word*>(rest.data()), scan.frame_bytes / sizeof(capnp::word)};
        Verdict verdict = m_connection.ingest_frame(frame);
        if (verdict == Verdict::accepted) ++accepted;
        else {
            ++refused;
            last_refusal = verdict;
        }
        at += scan.frame_bytes;
    }
    http::Response response;
    response.content_type = "application/json";
    if (accepted == 0 && refused > 0) {
        response.status = last_refusal == Verdict::source ? 403 : last_refusal == Verdict::quota ? 429 : 400;
        response.body = counts(accepted, refused, verdict_reason(last_refusal));
    } else {
        response.status = 202;
        response.body = counts(accepted, refused);
    }
    respond(std::move(response));
}

void HttpGatewaySession::get_commands() {
    http::Response response;
    size_t count = m_connection.take_queued_commands([&](const wire::Frame& frame, const command::Ref& ref) {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
        m_encoder.encode(reader.getRoot<schema::Message>(), response.body);
        m_connection.command_delivered(ref);
        return true;
    });
    if (count == 0) {
        response.status = 204;
        respond(std::move(response));
        return;
    }
    response.status = 200;
    response.content_type = "application/x-ndjson";
    respond(std::move(response));
}

void HttpGatewaySession::post_replies(const http::Request& request) {
    m_frames.clear();
    http::BodyResult result =
        m_decoder.decode(request.header("Content-Type").value_or(""), request.body, m_frames, Strict::yes);
    if (result.status != 0) {
        m_connection.refuse(result.status == 413 ? reason::oversized : reason::malformed,
                            fmt::format("HTTP replies refused ({}): {}", result.status, result.first_error));
        respond(http::error_response(result.status, result.first_error.empty() ? "the body is not replies"
                                                                                : result.first_error));
        return;
    }
    size_t accepted = 0, refused = 0;
    Verdict last_refusal = Verdict::accepted;
    std::string first_error;
    for (size_t at = 0; at < m_frames.size();) {
        auto rest = std::span<const std::byte>(m_frames).subspan(at);
        wire::FrameScan scan = wire::scan_frame(rest, {m_connection.max_message_bytes()});
        if (scan.status != wire::ScanStatus::complete) break;  // the decoder made them: cannot happen
        wire::Frame frame{reinterpret_cast<const capnp::word*>(rest.data()), scan.frame_bytes / sizeof(capnp::word)};
        std::string error;
        Verdict verdict = m_connection.reply_frame(frame, {}, &error);
        if (verdict == Verdict::accepted) {
            ++accepted;
        } else {
            ++refused;
            last_refusal = verdict;
            if (first_error.empty()) first_error = error.empty() ? std::string(verdict_reason(verdict)) : error;
        }
        at += scan.frame_bytes;
    }
    http::Response response;
    response.content_type = "application/json";
    if (accepted == 0 && refused > 0) {
        response.status = last_refusal == Verdict::source ? 403 : last_refusal == Verdict::quota ? 429 : 400;
        response.body = counts(accepted, refused, first_error);
    } else {
        response.status = 202;
        response.body = counts(accepted, refused, first_error);
    }
    respond(std::move(response));
}

}  // namespace mh::endpoint
