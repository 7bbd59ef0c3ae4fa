// HTTPS for gateways, on lib/http's transport-free parser:
//   POST /v1/messages   a body of JSON lines (application/x-ndjson), one JSON object or an
//                       array of them (application/json), or mh frames
//                       (application/vnd.mh.frames), authenticated by
//                       "Authorization: Bearer <token>" or the client certificate.
//                       202 {"accepted":N,"refused":M} once the accepted ones are in the output;
//                       401 no or bad credentials, 403 every message for a foreign source,
//                       400 a malformed body (nothing taken), 413 a body over the limit (from
//                       Content-Length, before it is read), 415 an unknown Content-Type,
//                       429 + Retry-After when the body exceeds the gateway's quota (nothing taken),
//                       413 when it holds more messages than the quota's burst (it never could).
//   GET /v1/commands    the commands waiting for this gateway, as JSON lines (200), or 204
//                       when there are none: how an HTTP-only gateway fetches them.
//   POST /v1/replies    devices' replies to commands (lib/command), in the bodies
//                       /v1/messages takes, each with correlation_id: 202 {"accepted":N,
//                       "refused":M}; when none is accepted 400 (no correlation_id, not
//                       JSON), 403 (a foreign source) or 429.
// Keep-alive and pipelining are supported; responses keep the requests' order. A response
// that ends the connection with an error (413 for a body announced too large, ...) closes
// lingering: the client gets to read it even while it is still sending its body.
#pragma once

#include "endpoint/server.h"
#include "http/body.h"
#include "http/request.h"
#include "http/response.h"
#include "json/json_codec.h"

#include <string>
#include <vector>

namespace mh::endpoint {

constexpr size_t k_body_messages_per_max_message = 64;  // a body may hold this many largest messages
constexpr std::string_view k_messages_path = "/v1/messages";
constexpr std::string_view k_commands_path = "/v1/commands";
constexpr std::string_view k_replies_path = "/v1/replies";

class HttpGatewaySession final : public Session {
public:
    explicit HttpGatewaySession(Connection& connection);
    size_t receive(std::span<const std::byte> data) override;
    void flushed() override;

private:
    bool authenticate(const http::Request& request);  // false: a 401 was queued
    void handle(const http::Request& request);
    void post_messages(const http::Request& request);
    void get_commands();
    void post_replies(const http::Request& request);
    void respond(http::Response response);

    Connection& m_connection;
    http::RequestParser m_parser;
    http::BodyDecoder m_decoder;
    http::Request m_request;
    std::string m_token;  // the bearer token that logged this connection in
    std::vector<std::byte> m_frames;
    std::string m_responses;  // waiting for the output flush
    bool m_close_after = false;
    bool m_linger = false;  // the close follows an error: linger (see above)
    JsonEncoder m_encoder;
};

}  // namespace mh::endpoint
