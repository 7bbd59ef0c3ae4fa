// Real curl against the request parser, body decoder and response writer: a one-connection
// poll loop on loopback that accepts POSTs of messages with a bearer token, as the
// endpoint will (minus TLS).
#include "http/body.h"
#include "http/request.h"
#include "http/response.h"

#include "support/loopback.h"
#include "support/support.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <errno.h>

#include <string>
#include <vector>

using namespace mh;
using namespace mh::http;
using namespace mh::test;
using namespace std::chrono_literals;

namespace {

constexpr auto k_deadline = 30s;  // generous: the machine is shared; normal runs take ms

// A tiny gate: POST /v1/messages with "Bearer good-token" and a body of messages -> 202.
struct Server {
    Limits limits;
    BodyDecoder decoder;
    std::vector<std::byte> frames;       // every accepted message
    std::vector<std::string> targets;    // every complete request's target
    int headers_events = 0;
    int continues_sent = 0;
    int chunked_requests = 0;
    std::optional<RequestError> error;

    // What to answer to a complete request.
    Response answer(const Request& request) {
        if (request.method != "POST" || request.path() != "/v1/messages")
            return error_response(404, "no such resource");
        if (bearer_token(request) != "good-token") {
            auto response = error_response(401, "a bearer token is required");
            response.headers.push_back({"WWW-Authenticate", "Bearer"});
            return response;
        }
        auto result = decoder.decode(request.header("Content-Type").value_or(""), request.body, frames);
        if (result.status) return error_response(result.status, result.first_error);
        Response response;
        response.status = 202;
        response.content_type = "application/json";
        response.body = "{\"accepted\":" + std::to_string(result.accepted) + "}";
        response.close = !request.keep_alive;
        return response;
    }

    // Serves one connection until the client closes it or the deadline passes.
    void serve(Fd& connection, ChildProcess& child) {
        RequestParser parser(limits);
        Request request;
        std::string output;
        bool open = true, closing = false;
        auto end = std::chrono::steady_clock::now() + k_deadline;
        while (open && std::chrono::steady_clock::now() < end) {
            pollfd p{connection.get(), static_cast<short>(POLLIN | (output.empty() ? 0 : POLLOUT)), 0};
            ::poll(&p, 1, 50);
            if (!closing && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
                char buffer[4096];
                ssize_t n = ::read(connection.get(), buffer, sizeof(buffer));
                if (n > 0) {
                    parser.feed(std::string_view(buffer, n));
                } else if (n == 0 || errno != EAGAIN) {
                    open = false;
                }
                while (!closing) {
                    ParseStatus status = parser.next(request);
                    if (status == ParseStatus::need_more) break;
                    if (status == ParseStatus::headers) {
                        ++headers_events;
                        if (request.expects_continue) {
                            write_continue(output);
                            ++continues_sent;
                        }
                    } else if (status == ParseStatus::error) {
                        error = parser.error();
                        write(output, error_response(*parser.error()));
                        closing = true;
                    } else {
                        targets.emplace_back(request.target);
                        chunked_requests += request.chunked;
                        Response response = answer(request);
                        write(output, response);
                        closing = response.close;
                    }
                }
            }
            while (!output.empty()) {
                ssize_t n = ::write(connection.get(), output.data(), output.size());
                if (n <= 0) break;
                output.erase(0, n);
            }
            if (closing && output.empty()) open = false;
            child.collect();
        }
    }

    std::string messages_as_json() const {
        auto words = to_words(frames);
        kj::ArrayPtr<const capnp::word> rest(words.data(), words.size());
        JsonEncoder encoder;
        std::string out;
        while (rest.size() > 0) {
            capnp::FlatArrayMessageReader reader(rest);
            encoder.encode(reader.getRoot<schema::Message>(), out);
            rest = kj::arrayPtr(reader.getEnd(), rest.end());
        }
        return out;
    }
};

std::vector<std::string> curl(int port, std::vector<std::string> args, const std::string& path = "/v1/messages") {
    std::vector<std::string> argv{"curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}\n"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("http://127.0.0.1:" + std::to_string(port) + path);
    return argv;
}

const std::string k_lines = "{\"source\":\"s1\",\"kind\":\"telemetry\",\"temperature\":21.5}\n"
                            "{\"source\":\"s2\",\"kind\":\"telemetry\",\"motor\":{\"rpm\":1200}}\n";

}  // namespace

TEST(Curl, PostsJsonLinesWithABearerToken) {
    LoopbackListener listener;
    Server server;
    ChildProcess client(curl(listener.port(), {"-H", "Authorization: Bearer good-token", "-H",
                                                "Content-Type: application/x-ndjson", "--data-binary", k_lines}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << client.err();
    server.serve(connection, client);
    EXPECT_EQ(client.wait(k_deadline), 0) << client.err();
    EXPECT_EQ(client.out(), "{\"accepted\":2}\n202\n");
    EXPECT_EQ(server.messages_as_json(), k_lines);
}

TEST(Curl, KeepAliveChunkedAndJsonArray) {
    LoopbackListener listener;
    Server server;
    // Two requests on one connection: a chunked JSON array, then the same again.
    std::string array = "[{\"source\":\"a\"},{\"source\":\"b\"},{\"source\":\"c\"}]";
    ChildProcess client(curl(listener.port(), {"-H", "Authorization: Bearer good-token", "-H",
                                                "Content-Type: application/json", "-H",
                                                "Transfer-Encoding: chunked", "--data-binary", array,
                                                "http://127.0.0.1:" + std::to_string(listener.port()) +
                                                    "/v1/messages?second"}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << client.err();
    server.serve(connection, client);
    EXPECT_EQ(client.wait(k_deadline), 0) << client.err();
    EXPECT_EQ(client.out(), "{\"accepted\":3}\n202\n{\"accepted\":3}\n202\n");
    EXPECT_EQ(server.targets, (std::vector<std::string>{"/v1/messages?second", "/v1/messages"}));
    EXPECT_EQ(server.chunked_requests, 2);
    EXPECT_EQ(server.messages_as_json(), "{\"source\":\"a\"}\n{\"source\":\"b\"}\n{\"source\":\"c\"}\n"
                                         "{\"source\":\"a\"}\n{\"source\":\"b\"}\n{\"source\":\"c\"}\n");
}

TEST(Curl, ExpectContinue) {
    LoopbackListener listener;
    Server server;
    ChildProcess client(curl(listener.port(), {"-H", "Authorization: Bearer good-token", "-H",
                                                "Content-Type: application/x-ndjson", "-H",
                                                "Expect: 100-continue", "--data-binary", k_lines}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << client.err();
    server.serve(connection, client);
    EXPECT_EQ(client.wait(k_deadline), 0) << client.err();
    EXPECT_EQ(client.out(), "{\"accepted\":2}\n202\n");
    EXPECT_EQ(server.continues_sent, 1);
}

TEST(Curl, OversizedBodyIsRefusedBeforeItIsSent) {
    LoopbackListener listener;
    Server server;
    server.limits.max_body_bytes = 1000;
    std::string big(5000, 'x');
    ChildProcess client(curl(listener.port(), {"-H", "Authorization: Bearer good-token", "-H",
                                                "Content-Type: application/x-ndjson", "-H",
                                                "Expect: 100-continue", "--data-binary", big}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << client.err();
    server.serve(connection, client);
    connection.reset();
    EXPECT_EQ(client.wait(k_deadline), 0) << client.err();
    EXPECT_EQ(client.out(), "{\"error\":\"body larger than the limit\"}\n\n413\n");
    ASSERT_TRUE(server.error);
    EXPECT_EQ(server.error->status, 413);
    EXPECT_EQ(server.continues_sent, 0);
}

TEST(Curl, RefusalsCarryTheirStatus) {
    LoopbackListener listener;
    Server server;
    ChildProcess client(curl(listener.port(), {"-H", "Content-Type: application/x-ndjson", "--data-binary", k_lines}));
    Fd connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << client.err();
    server.serve(connection, client);
    EXPECT_EQ(client.wait(k_deadline), 0) << client.err();
    EXPECT_EQ(client.out(), "{\"error\":\"a bearer token is required\"}\n\n401\n");

    ChildProcess bad_json(curl(listener.port(), {"-H", "Authorization: Bearer good-token", "-H",
                                                  "Content-Type: application/x-ndjson", "--data-binary",
                                                  "{\"source\":\"ok\"}\n{\"time\":\"never\"}\n"}));
    connection = listener.accept(k_deadline);
    ASSERT_TRUE(connection) << bad_json.err();
    server.serve(connection, bad_json);
    EXPECT_EQ(bad_json.wait(k_deadline), 0) << bad_json.err();
    EXPECT_NE(bad_json.out().find("line 2: time:"), std::string::npos) << bad_json.out();
    EXPECT_NE(bad_json.out().find("\n400\n"), std::string::npos) << bad_json.out();
    EXPECT_TRUE(server.frames.empty());  // nothing of a refused body is taken
}
