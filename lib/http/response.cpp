#include "http/response.h"

#include "json/json_codec.h"

#include <fmt/format.h>

#include <cassert>

namespace mh::http {

std::string_view reason_phrase(int status) {
    switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 411: return "Length Required";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 417: return "Expectation Failed";
        case 422: return "Unprocessable Content";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
    }
}

void write(std::string& out, const Response& response) {
    assert(response.status >= 100 && response.status <= 999);
    fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
                   response.status, reason_phrase(response.status), response.body.size());
    if (!response.content_type.empty())
        fmt::format_to(std::back_inserter(out), "Content-Type: {}\r\n", response.content_type);
    if (response.retry_after)
        fmt::format_to(std::back_inserter(out), "Retry-After: {}\r\n", response.retry_after->count());
    if (response.close) out += "Connection: close\r\n";
    for (const auto& [name, value] : response.headers) {
        assert(name.find_first_of("\r\n:") == std::string::npos &&
               value.find_first_of("\r\n") == std::string::npos);
        fmt::format_to(std::back_inserter(out), "{}: {}\r\n", name, value);
    }
    out += "\r\n";
    out += response.body;
}

void write_continue(std::string& out) { out += "HTTP/1.1 100 Continue\r\n\r\n"; }

Response error_response(int status, std::string_view reason,
                        std::optional<std::chrono::seconds> retry_after) {
    Response response;
    response.status = status;
    response.content_type = "application/json";
    response.body = "{\"error\":";
    json::append_string(response.body, reason);
    response.body += "}\n";
    response.retry_after = retry_after;
    switch (status) {
        case 400: case 413: case 414: case 417: case 431: case 501: case 505:
            response.close = true;
            break;
        default:
            break;
    }
    return response;
}

Response error_response(const RequestError& error) { return error_response(error.status, error.reason); }

}  // namespace mh::http
