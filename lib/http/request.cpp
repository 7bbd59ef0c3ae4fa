#include "http/request.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace mh::http {
namespace {

constexpr size_t k_max_chunk_line_bytes = 1024;  // chunk size and extensions
constexpr size_t k_max_chunk_size_digits = 15;   // 2^60: beyond any body limit
constexpr size_t k_idle_buffer_bytes = 4 * 1024; // capacity kept between requests

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 9110 tchar.
bool is_token_char(unsigned char c) {
    if (c >= '0' && c <= '9') return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool is_token(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return is_token_char(static_cast<unsigned char>(c));
    });
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

// The line starting at `at` in `text` without its "\n" or "\r\n", and where the next begins;
// nullopt when its newline has not arrived.
struct Line {
    std::string_view text;
    size_t next;
};
std::optional<Line> line_at(std::string_view text, size_t at) {
    size_t newline = text.find('\n', at);
    if (newline == std::string_view::npos) return std::nullopt;
    size_t end = newline;
    if (end > at && text[end - 1] == '\r') --end;
    return Line{text.substr(at, end - at), newline + 1};
}

// Splits a comma-separated list and calls `each` on every trimmed, non-empty element.
template <typename F>
void for_each_element(std::string_view list, F&& each) {
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view element = trim(list.substr(0, comma));
        if (!element.empty()) each(element);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
}

bool valid_field_value(std::string_view value) {
    for (char ch : value) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 ? c != '\t' : c == 0x7f) return false;  // CTLs but HTAB; obs-text allowed
    }
    return true;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

bool has_token(std::string_view list, std::string_view token) {
    bool found = false;
    for_each_element(list, [&](std::string_view element) { found = found || iequals(element, token); });
    return found;
}

std::string_view Request::path() const { return target.substr(0, target.find('?')); }

std::string_view Request::query() const {
    size_t mark = target.find('?');
    return mark == std::string_view::npos ? std::string_view() : target.substr(mark + 1);
}

std::optional<std::string_view> Request::header(std::string_view name) const {
    for (const auto& h : headers)
        if (iequals(h.name, name)) return h.value;
    return std::nullopt;
}

size_t Request::header_count(std::string_view name) const {
    return std::count_if(headers.begin(), headers.end(),
                         [&](const Header& h) { return iequals(h.name, name); });
}

std::optional<std::string_view> bearer_token(const Request& request) {
    if (request.header_count("Authorization") != 1) return std::nullopt;
    std::string_view value = *request.header("Authorization");
    constexpr std::string_view scheme = "bearer";
    if (value.size() <= scheme.size() || !iequals(value.substr(0, scheme.size()), scheme) ||
        value[scheme.size()] != ' ')
        return std::nullopt;
    std::string_view token = trim(value.substr(scheme.size()));
    // token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    size_t i = 0;
    while (i < token.size() && (std::isalnum(static_cast<unsigned char>(token[i])) ||
                                std::strchr("-._~+/", token[i]) != nullptr))
        ++i;
    if (i == 0) return std::nullopt;
    while (i < token.size() && token[i] == '=') ++i;
    if (i != token.size()) return std::nullopt;
    return token;
}

RequestParser::RequestParser(Limits limits) : m_limits(limits) {}

void RequestParser::feed(std::string_view bytes) {
    if (m_error) return;
    if (m_start > 0) {
        // Requests already returned are dropped; the current one moves to the front.
        m_buffer.erase(0, m_start);
        m_cursor -= m_start;
        m_start = 0;
    }
    m_buffer.append(bytes);
}

ParseStatus RequestParser::fail(int status, std::string reason) {
    m_error = RequestError{status, std::move(reason)};
    return ParseStatus::error;
}

ParseStatus RequestParser::next(Request& request) {
    if (m_error) return ParseStatus::error;
    if (m_phase == Phase::done) {
        // The previous request was returned: start on the next one, pipelined or not.
        m_start = m_cursor;
        if (m_start == m_buffer.size()) {
            // Nothing of a next request yet: an idle keep-alive connection keeps little.
            m_buffer.clear();
            m_start = m_cursor = 0;
            if (m_buffer.capacity() > k_idle_buffer_bytes) m_buffer.shrink_to_fit();
            if (m_body.capacity() > k_idle_buffer_bytes) m_body = std::string();
        }
        m_phase = Phase::start;
        m_headers_reported = false;
        m_body.clear();
    }
    if (m_phase == Phase::start) {
        ParseStatus status = parse_head(request);
        if (status != ParseStatus::request) return status;  // need_more or error
    } else if (request.method.empty() || request.method.data() != m_buffer.data() + m_start) {
        // The head was parsed on an earlier call, and feed() has moved the buffer since (or
        // this is another Request object): its views are rebuilt from the same bytes.
        reparse_head(request);
    }
    ParseStatus status = parse_body(request);
    if (status == ParseStatus::need_more && !m_headers_reported) {
        m_headers_reported = true;
        return ParseStatus::headers;
    }
    return status;
}

ParseStatus RequestParser::parse_head(Request& request) {
    std::string_view text(m_buffer);
    // [RFC 9112 2.2]: empty lines before a request line are ignored.
    while (m_start < text.size() && (text[m_start] == '\r' || text[m_start] == '\n')) {
        if (text[m_start] == '\r' && (m_start + 1 >= text.size() || text[m_start + 1] != '\n'))
            break;
        m_start += text[m_start] == '\r' ? 2 : 1;
    }
    if (m_cursor < m_start) m_cursor = m_start;

    // Find the empty line that ends the head, scanning only what is new, within the limits.
    auto request_line = line_at(text, m_start);
    if (!request_line) {
        // Its '\r' may be buffered already: more than the limit plus one is too long for sure.
        if (text.size() - m_start > m_limits.max_request_line_bytes + 1)
            return fail(414, "request line too long");
        return ParseStatus::need_more;
    }
    if (request_line->text.size() > m_limits.max_request_line_bytes)
        return fail(414, "request line too long");
    size_t headers_start = request_line->next;
    size_t at = std::max(m_cursor, headers_start);
    size_t head_end = 0;
    while (true) {
        auto line = line_at(text, at);
        if (!line) {
            if (text.size() - headers_start > m_limits.max_header_bytes)
                return fail(431, "header section too large");
            m_cursor = at;  // resume here when more arrives
            return ParseStatus::need_more;
        }
        if (line->text.empty()) {
            head_end = line->next;
            break;
        }
        at = line->next;
    }
    if (head_end - headers_start > m_limits.max_header_bytes)
        return fail(431, "header section too large");

    // The request line: method SP target SP HTTP/1.x
    std::string_view line = request_line->text;
    size_t first = line.find(' ');
    size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
    if (second == std::string_view::npos) return fail(400, "malformed request line");
    request.method = line.substr(0, first);
    request.target = line.substr(first + 1, second - first - 1);
    std::string_view version = line.substr(second + 1);
    if (!is_token(request.method)) return fail(400, "malformed method");
    if (request.target.empty() ||
        !std::all_of(request.target.begin(), request.target.end(),
                     [](char c) { return c > 0x20 && c < 0x7f; }))
        return fail(400, "malformed request target");
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(static_cast<unsigned char>(version[5])) ||
        version[6] != '.' || !std::isdigit(static_cast<unsigned char>(version[7])))
        return fail(400, "malformed HTTP version");
    if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
        return fail(505, "HTTP version not supported (HTTP/1.1 and 1.0 only)");
    request.version_minor = version[7] - '0';

    // The header fields.
    request.headers.clear();
    for (at = headers_start;;) {
        auto field = line_at(text, at);
        at = field->next;
        if (field->text.empty()) break;
        std::string_view raw = field->text;
        if (raw.front() == ' ' || raw.front() == '\t')
            return fail(400, "obsolete line folding in a header");
        size_t colon = raw.find(':');
        if (colon == std::string_view::npos) return fail(400, "header line without ':'");
        std::string_view name = raw.substr(0, colon);
        if (!is_token(name)) return fail(400, "malformed header name");
        std::string_view value = trim(raw.substr(colon + 1));
        if (!valid_field_value(value)) return fail(400, "control character in a header value");
        if (request.headers.size() == m_limits.max_headers) return fail(431, "too many headers");
        request.headers.push_back({name, value});
    }

    // What the headers mean for framing and the connection.
    size_t hosts = request.header_count("Host");
    if (hosts > 1 || (hosts == 0 && request.version_minor == 1))
        return fail(400, "exactly one Host header is required");

    request.chunked = false;
    request.content_length.reset();
    size_t codings = 0;
    bool other_coding = false;
    bool chunked_last = false;
    std::optional<std::string_view> length_text;
    bool lengths_differ = false;
    for (const auto& h : request.headers) {
        if (iequals(h.name, "Transfer-Encoding")) {
            for_each_element(h.value, [&](std::string_view coding) {
                ++codings;
                chunked_last = iequals(coding, "chunked");
                if (!chunked_last) other_coding = true;
            });
        } else if (iequals(h.name, "Content-Length")) {
            for_each_element(h.value, [&](std::string_view length) {
                if (length_text && *length_text != length) lengths_differ = true;
                length_text = length;
            });
            if (!length_text) lengths_differ = true;  // an empty Content-Length
        }
    }
    if (codings > 0) {
        // Both framings at once is how requests are smuggled past proxies: refused.
        if (request.header_count("Content-Length")) return fail(400, "both Transfer-Encoding and Content-Length");
        if (request.version_minor == 0) return fail(400, "Transfer-Encoding in HTTP/1.0");
        if (other_coding && chunked_last) return fail(501, "transfer coding not implemented (only chunked)");
        if (!chunked_last || codings > 1) return fail(other_coding ? 501 : 400,
                                                      other_coding ? "transfer coding not implemented (only chunked)"
                                                                   : "chunked applied more than once");
        request.chunked = true;
    } else if (request.header_count("Content-Length")) {
        if (lengths_differ) return fail(400, "conflicting Content-Length values");
        std::string_view digits = *length_text;
        if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return fail(400, "malformed Content-Length");
        while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
        if (digits.size() > 18) return fail(413, "body larger than the limit");
        uint64_t length = 0;
        for (char c : digits) length = length * 10 + static_cast<uint64_t>(c - '0');
        if (length > m_limits.max_body_bytes) return fail(413, "body larger than the limit");
        request.content_length = length;
    }

    request.expects_continue = false;
    if (auto expect = request.header("Expect")) {
        if (!iequals(*expect, "100-continue") || request.header_count("Expect") > 1)
            return fail(417, "unsupported Expect (only 100-continue)");
        request.expects_continue = request.version_minor == 1;
    }
    auto connection = request.header("Connection");
    if (request.version_minor == 1)
        request.keep_alive = !(connection && has_token(*connection, "close"));
    else
        request.keep_alive = connection && has_token(*connection, "keep-alive");

    m_cursor = head_end;
    request.body = {};
    m_phase = request.chunked ? Phase::chunk_size : Phase::body;
    m_chunk_remaining = 0;
    m_trailer_bytes = 0;
    m_trailer_count = 0;
    return ParseStatus::request;  // the head: parse_body() goes on
}

void RequestParser::reparse_head(Request& request) {
    Phase phase = m_phase;
    size_t cursor = m_cursor;
    uint64_t chunk_remaining = m_chunk_remaining;
    size_t trailer_bytes = m_trailer_bytes, trailer_count = m_trailer_count;
    m_cursor = m_start;
    parse_head(request);  // it succeeded on these very bytes before
    m_phase = phase;
    m_cursor = cursor;
    m_chunk_remaining = chunk_remaining;
    m_trailer_bytes = trailer_bytes;
    m_trailer_count = trailer_count;
}

ParseStatus RequestParser::parse_body(Request& request) {
    std::string_view text(m_buffer);
    if (m_phase == Phase::body) {
        uint64_t length = request.content_length.value_or(0);
        if (text.size() - m_cursor < length) return ParseStatus::need_more;
        request.body = text.substr(m_cursor, length);
        m_cursor += length;
        m_phase = Phase::done;
        return ParseStatus::request;
    }

    while (true) {
        if (m_phase == Phase::chunk_size) {
            auto line = line_at(text, m_cursor);
            if (!line) {
                if (text.size() - m_cursor > k_max_chunk_line_bytes + 1)  // '\r' included
                    return fail(400, "chunk size line too long");
                return ParseStatus::need_more;
            }
            if (line->text.size() > k_max_chunk_line_bytes) return fail(400, "chunk size line too long");
            std::string_view size_text = line->text.substr(0, line->text.find(';'));
            size_text = trim(size_text);
            if (size_text.empty() || size_text.size() > k_max_chunk_size_digits ||
                !std::all_of(size_text.begin(), size_text.end(),
                             [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
                return fail(400, "malformed chunk size");
            uint64_t size = 0;
            for (char c : size_text)
                size = size * 16 + static_cast<uint64_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : lower(c) - 'a' + 10);
            if (m_body.size() + size > m_limits.max_body_bytes) return fail(413, "body larger than the limit");
            m_cursor = line->next;
            m_chunk_remaining = size;
            m_phase = size == 0 ? Phase::trailers : Phase::chunk_data;
        } else if (m_phase == Phase::chunk_data) {
            // The data, then its CRLF.
            if (text.size() - m_cursor < m_chunk_remaining + 1) return ParseStatus::need_more;
            size_t after = m_cursor + m_chunk_remaining;
            size_t next;
            if (text[after] == '\n') {
                next = after + 1;
            } else if (text[after] == '\r') {
                if (after + 1 >= text.size()) return ParseStatus::need_more;
                if (text[after + 1] != '\n') return fail(400, "chunk data not followed by CRLF");
                next = after + 2;
            } else {
                return fail(400, "chunk data not followed by CRLF");
            }
            m_body.append(text.substr(m_cursor, m_chunk_remaining));
            m_cursor = next;
            m_phase = Phase::chunk_size;
        } else if (m_phase == Phase::trailers) {
            auto line = line_at(text, m_cursor);
            if (!line) {
                if (m_trailer_bytes + (text.size() - m_cursor) > m_limits.max_header_bytes)
                    return fail(431, "trailer section too large");
                return ParseStatus::need_more;
            }
            m_cursor = line->next;
            if (line->text.empty()) {
                request.body = m_body;
                m_phase = Phase::done;
                return ParseStatus::request;
            }
            // Trailer fields are read past and bounded, not used.
            m_trailer_bytes += line->text.size() + 2;
            if (++m_trailer_count > m_limits.max_headers || m_trailer_bytes > m_limits.max_header_bytes)
                return fail(431, "trailer section too large");
            if (line->text.find(':') == std::string_view::npos) return fail(400, "malformed trailer");
        } else {
            return ParseStatus::need_more;  // not reached: done is handled by next()
        }
    }
}

}  // namespace mh::http
