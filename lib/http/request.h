// HTTP/1.1 requests, transport-free: an incremental parser over received bytes (request
// line, headers, Content-Length and chunked bodies, keep-alive, pipelining, Expect:
// 100-continue), with limits that bound what a client can make the server buffer. Every
// refusal is a status code and a reason, never an exception: 400 for malformed requests,
// 413 for a body over the limit (known from Content-Length before the body is read), 414
// for a long request line, 431 for too many or too large headers, 417 for an unknown
// Expect, 501 for transfer codings other than chunked, 505 for other HTTP versions.
//
//   http::RequestParser parser(limits);
//   parser.feed(received);
//   http::Request request;
//   while (true) {
//       auto status = parser.next(request);
//       if (status == http::ParseStatus::headers) { check auth/size; maybe write_continue(out); continue; }
//       if (status == http::ParseStatus::request) { handle(request); continue; }   // pipelined: loop
//       if (status == http::ParseStatus::error) { write(out, error_response(*parser.error())); close; }
//       break;  // need_more
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::http {

struct Limits {
    size_t max_request_line_bytes = 8 * 1024;  // method, target and version: else 414
    size_t max_header_bytes = 16 * 1024;       // all header lines (and chunked trailers): else 431
    size_t max_headers = 64;                   // header fields (and trailers): else 431
    size_t max_body_bytes = 4 * 1024 * 1024;   // after de-chunking: else 413
};

struct Header {
    std::string_view name;   // as sent; compare with iequals()
    std::string_view value;  // leading and trailing spaces and tabs removed
};

// One parsed request. Its views point into the parser's buffer and stay valid until the
// parser's next feed() or next().
struct Request {
    std::string_view method;  // a token, case-sensitive ("POST")
    std::string_view target;  // as sent: "/v1/messages?x=1"
    int version_minor = 1;    // HTTP/1.0 or HTTP/1.1
    std::vector<Header> headers;
    std::string_view body;   // the whole body, de-chunked
    std::optional<uint64_t> content_length;  // as declared, when not chunked
    bool chunked = false;
    bool keep_alive = true;          // the connection stays open after the response
    bool expects_continue = false;   // "Expect: 100-continue" was sent

    std::string_view path() const;   // target up to '?'
    std::string_view query() const;  // after '?', or empty
    // The first header of that name (case-insensitive), or nullopt.
    std::optional<std::string_view> header(std::string_view name) const;
    // How many headers have that name.
    size_t header_count(std::string_view name) const;
};

// A refusal: the status to answer with and why, for the body and for logs.
struct RequestError {
    int status = 400;
    std::string reason;
};

enum class ParseStatus {
    headers,    // the request's head is complete and a body is still to come: the caller may
                // check it (auth, Content-Length) and send "100 Continue" or a refusal.
                // Returned once per request; calling next() again goes on with the body.
    request,    // `request` is complete; the next call starts on the next (pipelined) one
    need_more,  // feed more bytes
    error,      // error() says which status and why; the parser stays in this state and
                // the connection must close after the error response
};

class RequestParser {
public:
    explicit RequestParser(Limits limits = {});

    // Appends received bytes. Views into an earlier request become invalid.
    void feed(std::string_view bytes);

    ParseStatus next(Request& request);

    const std::optional<RequestError>& error() const { return m_error; }
    size_t buffered_bytes() const { return m_buffer.size() - m_start; }
    // Whether a request has begun and is not complete (for idle timeouts: a partial request
    // is a slow client, no bytes at all is an idle keep-alive connection).
    bool in_request() const {
        if (m_phase == Phase::done) return m_buffer.size() > m_cursor;  // the next one's bytes
        return m_phase != Phase::start || buffered_bytes() > 0;
    }
    const Limits& limits() const { return m_limits; }

private:
    enum class Phase { start, body, chunk_size, chunk_data, trailers, done };
    ParseStatus fail(int status, std::string reason);
    ParseStatus parse_head(Request& request);
    ParseStatus parse_body(Request& request);
    void reparse_head(Request& request);

    Limits m_limits;
    std::string m_buffer;
    size_t m_start = 0;   // where the current request begins
    size_t m_cursor = 0;  // how far into it parsing has come
    Phase m_phase = Phase::start;
    bool m_headers_reported = false;
    uint64_t m_chunk_remaining = 0;
    size_t m_trailer_bytes = 0;
    size_t m_trailer_count = 0;
    std::string m_body;  // a chunked body, de-chunked
    std::optional<RequestError> m_error;
};

// ASCII case-insensitive equality, for header names and tokens.
bool iequals(std::string_view a, std::string_view b);

// Whether a comma-separated header value holds `token` (case-insensitive), as in
// "Connection: keep-alive, Upgrade".
bool has_token(std::string_view list, std::string_view token);

// The token of "Authorization: Bearer <token>" (scheme case-insensitive, RFC 6750 token68
// characters). nullopt when there is no Authorization header, more than one, another scheme,
// or a malformed token.
std::optional<std::string_view> bearer_token(const Request& request);

}  // namespace mh::http
