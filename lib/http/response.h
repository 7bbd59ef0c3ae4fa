// HTTP/1.1 responses, transport-free: a status, headers and a body written to bytes, with
// Content-Length always set (so that keep-alive works), Retry-After for 429/503, and the
// interim "100 Continue".
//
//   http::Response response{.status = 202, .content_type = "application/json",
//                           .body = R"({"accepted":12})"};
//   http::write(out, response);
//   http::write(out, http::error_response(429, "over quota", std::chrono::seconds(3)));
#pragma once

#include "http/request.h"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mh::http {

struct Response {
    int status = 200;
    std::string content_type;  // sent when not empty
    std::string body;
    std::optional<std::chrono::seconds> retry_after;  // "Retry-After: N"
    bool close = false;  // "Connection: close": the caller closes after writing it
    std::vector<std::pair<std::string, std::string>> headers;  // any others, in order
};

// The standard reason phrase ("Accepted", "Too Many Requests"); "Unknown" otherwise.
std::string_view reason_phrase(int status);

// Appends the response as HTTP/1.1 bytes: status line, Content-Length, Content-Type,
// Retry-After, Connection: close when asked, the caller's headers, the body. Header names
// and values are the caller's (not client input); they must not contain CR or LF.
void write(std::string& out, const Response& response);

// Appends "HTTP/1.1 100 Continue" for a request that expects it.
void write_continue(std::string& out);

// A refusal with a small JSON body {"error": REASON}; close is set for statuses after
// which the request stream cannot be trusted (400, 413, 414, 431, 501, 505, 417).
Response error_response(int status, std::string_view reason,
                        std::optional<std::chrono::seconds> retry_after = std::nullopt);
Response error_response(const RequestError& error);

}  // namespace mh::http
