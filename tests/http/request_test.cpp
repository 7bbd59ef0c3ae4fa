// The HTTP/1.1 request parser: framing (Content-Length, chunked), pipelining, keep-alive,
// Expect: 100-continue, and every refusal with its status.
#include "http/request.h"

#include <gtest/gtest.h>

#include <string>

using namespace mh::http;
using namespace std::string_literals;

namespace {

// Feeds `text` in pieces of `piece` bytes and returns the statuses of next() calls until
// need_more at the end; `requests` gets copies of the complete requests' parts.
struct Parsed {
    std::vector<std::string> bodies, targets;
    std::vector<bool> keep_alive;
    int headers_events = 0;
    std::optional<RequestError> error;
};

Parsed parse(const std::string& text, size_t piece = SIZE_MAX, Limits limits = {}) {
    RequestParser parser(limits);
    Request request;
    Parsed parsed;
    for (size_t at = 0; at < text.size() && !parsed.error; at += piece) {
        parser.feed(text.substr(at, piece));
        while (true) {
            ParseStatus status = parser.next(request);
            if (status == ParseStatus::need_more) break;
            if (status == ParseStatus::headers) {
                ++parsed.headers_events;
                continue;
            }
            if (status == ParseStatus::error) {
                parsed.error = parser.error();
                break;
            }
            parsed.bodies.emplace_back(request.body);
            parsed.targets.emplace_back(request.target);
            parsed.keep_alive.push_back(request.keep_alive);
        }
    }
    return parsed;
}

int error_status(const std::string& text, Limits limits = {}) {
    auto parsed = parse(text, SIZE_MAX, limits);
    return parsed.error ? parsed.error->status : 0;
}

const std::string k_post =
    "POST /v1/messages?dry=1 HTTP/1.1\r\n"
    "Host: endpoint.example\r\n"
    "Authorization: Bearer gw-01.1767225600.c2lnbmF0dXJl\r\n"
    "Content-Type: application/x-ndjson\r\n"
    "Content-Length: 26\r\n"
    "\r\n"
    "{\"t\":1}\n{\"t\":2}\n{\"t\":3}\n\n\n";

}  // namespace

TEST(Request, ParsesAPost) {
    RequestParser parser;
    parser.feed(k_post);
    Request request;
    ASSERT_EQ(parser.next(request), ParseStatus::request);
    EXPECT_EQ(request.method, "POST");
    EXPECT_EQ(request.target, "/v1/messages?dry=1");
    EXPECT_EQ(request.path(), "/v1/messages");
    EXPECT_EQ(request.query(), "dry=1");
    EXPECT_EQ(request.version_minor, 1);
    EXPECT_EQ(request.header("content-type"), "application/x-ndjson");
    EXPECT_EQ(request.header("X-Missing"), std::nullopt);
    EXPECT_EQ(request.content_length, 26u);
    EXPECT_EQ(request.body, "{\"t\":1}\n{\"t\":2}\n{\"t\":3}\n\n\n");
    EXPECT_TRUE(request.keep_alive);
    EXPECT_FALSE(request.expects_continue);
    EXPECT_EQ(bearer_token(request), "gw-01.1767225600.c2lnbmF0dXJl");
    EXPECT_FALSE(parser.in_request());  // done, and nothing of a next one yet
    EXPECT_EQ(parser.next(request), ParseStatus::need_more);
    EXPECT_FALSE(parser.in_request());
}

TEST(Request, ByteByByteGivesTheSame) {
    auto parsed = parse(k_post, 1);
    ASSERT_FALSE(parsed.error);
    ASSERT_EQ(parsed.bodies.size(), 1u);
    EXPECT_EQ(parsed.bodies[0], "{\"t\":1}\n{\"t\":2}\n{\"t\":3}\n\n\n");
    EXPECT_EQ(parsed.headers_events, 1);  // the head came before the body
}

TEST(Request, HeadersEventKeepsViewsValidAcrossFeeds) {
    std::string head = "POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    RequestParser parser;
    Request request;
    parser.feed(head);
    ASSERT_EQ(parser.next(request), ParseStatus::headers);
    EXPECT_TRUE(request.expects_continue);
    EXPECT_EQ(request.header("Host"), "h");
    EXPECT_TRUE(parser.in_request());
    EXPECT_EQ(parser.next(request), ParseStatus::need_more);
    parser.feed("he");
    EXPECT_EQ(parser.next(request), ParseStatus::need_more);
    parser.feed("llo");
    ASSERT_EQ(parser.next(request), ParseStatus::request);
    EXPECT_EQ(request.body, "hello");
    EXPECT_EQ(request.target, "/a");  // rebuilt after the buffer moved
    EXPECT_EQ(request.header("host"), "h");
}

TEST(Request, Pipelined) {
    std::string text = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                       "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    for (size_t piece : {size_t(1), size_t(7), SIZE_MAX}) {
        auto parsed = parse(text, piece);
        ASSERT_FALSE(parsed.error);
        EXPECT_EQ(parsed.targets, (std::vector<std::string>{"/one", "/two", "/three"}));
        EXPECT_EQ(parsed.bodies, (std::vector<std::string>{"", "abc", ""}));
        EXPECT_EQ(parsed.keep_alive, (std::vector<bool>{true, true, false}));
    }
}

TEST(Request, Chunked) {
    std::string text = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n"
                       "1;ext=1\r\n \r\n"
                       "A\r\n0123456789\r\n"
                       "0\r\nX-Trailer: yes\r\n\r\n"
                       "GET /after HTTP/1.1\r\nHost: h\r\n\r\n";
    for (size_t piece : {size_t(1), size_t(3), SIZE_MAX}) {
        auto parsed = parse(text, piece);
        ASSERT_FALSE(parsed.error) << parsed.error->reason;
        ASSERT_EQ(parsed.bodies.size(), 2u);
        EXPECT_EQ(parsed.bodies[0], "hello 0123456789");
        EXPECT_EQ(parsed.targets[1], "/after");
    }
}

TEST(Request, KeepAliveRules) {
    auto http10 = parse("GET / HTTP/1.0\r\n\r\n");
    ASSERT_EQ(http10.keep_alive.size(), 1u);
    EXPECT_FALSE(http10.keep_alive[0]);  // HTTP/1.0 closes unless asked, and needs no Host
    auto http10_keep = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    EXPECT_TRUE(http10_keep.keep_alive[0]);
    auto close = parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n");
    EXPECT_FALSE(close.keep_alive[0]);
    // Empty lines before a request are ignored.
    auto leading = parse("\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(leading.targets, std::vector<std::string>{"/x"});
    // Bare LF line ends are accepted.
    auto bare = parse("GET /lf HTTP/1.1\nHost: h\n\n");
    EXPECT_EQ(bare.targets, std::vector<std::string>{"/lf"});
}

TEST(Request, BadRequests) {
    EXPECT_EQ(error_status("GET\r\n\r\n"), 400);
    EXPECT_EQ(error_status("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);  // two spaces
    EXPECT_EQ(error_status("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(error_status("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(error_status("GET / HTTX/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(error_status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
    EXPECT_EQ(error_status("GET / HTTP/1.1\r\n\r\n"), 400);                          // no Host
    EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);    // two
    EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n"), 400);
    EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), 400);
    EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n"), 400);
    EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n"s), 400);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n"), 400);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), 400);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc"), 0);  // same value twice
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"), 400);  // smuggling shape
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400);
    EXPECT_EQ(error_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n"), 417);
    std::string chunked = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT_EQ(error_status(chunked + "zz\r\n"), 400);
    EXPECT_EQ(error_status(chunked + "3\r\nabcX"), 400);  // no CRLF after the data
    EXPECT_EQ(error_status(chunked + "1234567890abcdef0\r\n"), 400);  // too many digits
    EXPECT_EQ(error_status(chunked + "0\r\nnot a trailer\r\n\r\n"), 400);
}

TEST(Request, Limits) {
    Limits limits;
    limits.max_request_line_bytes = 64;
    limits.max_header_bytes = 128;
    limits.max_headers = 4;
    limits.max_body_bytes = 100;
    // A long request line is refused before its end arrives.
    EXPECT_EQ(error_status("GET /" + std::string(100, 'a'), limits), 414);
    EXPECT_EQ(error_status("GET /" + std::string(100, 'a') + " HTTP/1.1\r\n", limits), 414);
    // A line of exactly the limit passes, also when its '\r' comes before its '\n'.
    std::string at_limit = "GET /" + std::string(50, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n";
    EXPECT_FALSE(parse(at_limit, 1, limits).error);
    // Too many headers, too many header bytes (also before the head ends).
    std::string many = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    EXPECT_EQ(error_status(many, limits), 431);
    EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(200, 'x'), limits), 431);
    // A body over the limit: 413 from Content-Length, with none of the body sent.
    auto parsed = parse("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n",
                        SIZE_MAX, limits);
    ASSERT_TRUE(parsed.error);
    EXPECT_EQ(parsed.error->status, 413);
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                           limits), 413);
    // Exactly at the limit passes.
    EXPECT_EQ(error_status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'b'),
                           limits), 0);
    // Chunked: the sum of the chunks counts.
    std::string chunked = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT_EQ(error_status(chunked + "40\r\n" + std::string(64, 'c') + "\r\n40\r\n", limits), 413);
    // Trailers are bounded like headers.
    EXPECT_EQ(error_status(chunked + "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", limits), 431);
}

TEST(Request, ErrorIsSticky) {
    RequestParser parser;
    parser.feed("BAD\r\n\r\n");
    Request request;
    EXPECT_EQ(parser.next(request), ParseStatus::error);
    parser.feed("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(parser.next(request), ParseStatus::error);
    EXPECT_EQ(parser.error()->status, 400);
    EXPECT_EQ(parser.error()->reason, "malformed request line");
}

TEST(Request, BearerTokens) {
    auto token_of = [](const std::string& authorization) {
        RequestParser parser;
        parser.feed("GET / HTTP/1.1\r\nHost: h\r\n" + authorization + "\r\n");
        Request request;
        EXPECT_EQ(parser.next(request), ParseStatus::request);
        auto token = bearer_token(request);
        return token ? std::optional<std::string>(*token) : std::nullopt;
    };
    EXPECT_EQ(token_of("Authorization: Bearer abc.DEF-_~+/==\r\n"), "abc.DEF-_~+/==");
    EXPECT_EQ(token_of("authorization: bearer   abc\r\n"), "abc");
    EXPECT_EQ(token_of(""), std::nullopt);
    EXPECT_EQ(token_of("Authorization: Basic dXNlcjpwdw==\r\n"), std::nullopt);
    EXPECT_EQ(token_of("Authorization: Bearer\r\n"), std::nullopt);
    EXPECT_EQ(token_of("Authorization: Bearer a b\r\n"), std::nullopt);
    EXPECT_EQ(token_of("Authorization: Bearer a=b\r\n"), std::nullopt);
    EXPECT_EQ(token_of("Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"), std::nullopt);
}

TEST(Request, Tokens) {
    EXPECT_TRUE(iequals("Content-Length", "content-length"));
    EXPECT_FALSE(iequals("Content-Length", "content-lengt"));
    EXPECT_TRUE(has_token("keep-alive, Upgrade", "upgrade"));
    EXPECT_FALSE(has_token("keep-alive-ish", "keep-alive"));
}
