// HttpSource against an HTTP server of the test's own (a thread on 127.0.0.1, port 0) and
// the real libcurl: the ETag comes back as If-None-Match and a 304 yields nothing, the
// Last-Modified as If-Modified-Since, records seen in the previous poll are dropped, and
// failures (a 500, a response that is not JSON, a server that is gone) are survived.
#include "stream/http_source.h"

#include "core/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace mh;
using namespace std::chrono_literals;

// One response per connection (Connection: close), made by `handler` from the request text.
class TinyHttpServer {
public:
    using Handler = std::function<std::string(const std::string& request, size_t index)>;

    explicit TinyHttpServer(Handler handler) : m_handler(std::move(handler)) {
        m_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = 0;
        if (::bind(m_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(m_fd, 16) != 0)
            throw std::runtime_error("cannot listen");
        socklen_t length = sizeof address;
        ::getsockname(m_fd, reinterpret_cast<sockaddr*>(&address), &length);
        m_port = ntohs(address.sin_port);
        m_thread = std::thread([this] { serve(); });
    }
    ~TinyHttpServer() {
        ::shutdown(m_fd, SHUT_RDWR);  // accept() returns
        m_thread.join();
        ::close(m_fd);
    }
    std::string url(const std::string& path = "/api") const {
        return "http://127.0.0.1:" + std::to_string(m_port) + path;
    }
    std::vector<std::string> requests() {
        std::lock_guard lock(m_mutex);
        return m_requests;
    }

    static std::string response(int status, const std::string& headers, const std::string& body) {
        const char* reason = status == 200 ? "OK" : status == 304 ? "Not Modified" : "Error";
        return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Length: " +
               std::to_string(status == 304 ? 0 : body.size()) + "\r\nConnection: close\r\n" + headers + "\r\n" +
               (status == 304 ? "" : body);
    }

private:
    void serve() {
        for (;;) {
            int client = ::accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0) return;
            std::string request;
            char buffer[4096];
            while (request.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::read(client, buffer, sizeof buffer);
                if (n <= 0) break;
                request.append(buffer, static_cast<size_t>(n));
            }
            size_t index;
            {
                std::lock_guard lock(m_mutex);
                index = m_requests.size();
                m_requests.push_back(request);
            }
            std::string reply = m_handler(request, index);
            for (size_t sent = 0; sent < reply.size();) {
                ssize_t n = ::write(client, reply.data() + sent, reply.size() - sent);
                if (n <= 0) break;
                sent += static_cast<size_t>(n);
            }
            ::close(client);
        }
    }

    Handler m_handler;
    int m_fd = -1;
    int m_port = 0;
    std::thread m_thread;
    std::mutex m_mutex;
    std::vector<std::string> m_requests;
};

bool has_header(const std::string& request, const std::string& header) {
    return request.find("\r\n" + header + "\r\n") != std::string::npos;
}

// Runs the source until `done` holds (checked whenever it is idle) or 20 s pass; returns the
// value of field `field` (an int) of every message, in order.
std::vector<int64_t> run_until(stream::HttpSource& source, const std::function<bool()>& done,
                               const std::string& field = "n") {
    std::vector<int64_t> values;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    wire::Frame frame;
    while (std::chrono::steady_clock::now() < deadline) {
        auto next = source.next(wire::Wait::no, frame);
        if (next == wire::Next::frame) {
            std::vector<capnp::word> words(frame.words, frame.words + frame.word_count);
            capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
            for (auto f : reader.getRoot<schema::Message>().getFields())
                if (f.getName() == field) values.push_back(f.getValue().getInt());
            continue;
        }
        if (done()) return values;
        std::this_thread::sleep_for(2ms);
    }
    ADD_FAILURE() << "not done within 20 s";
    return values;
}

struct Fixture {
    Log log{"http_source_test", LogLevel::error};
    StopFlag stop{false};
    metrics::Registry metrics;
};

std::string items(std::initializer_list<int> ids) {
    std::string body = R"({"data":{"items":[)";
    bool first = true;
    for (int id : ids) {
        if (!first) body += ',';
        first = false;
        body += R"({"id":)" + std::to_string(id) + R"(,"n":)" + std::to_string(id) + R"(,"source":"s"})";
    }
    return body + "]}}";
}

TEST(HttpSource, SendsTheETagBackAndA304YieldsNothingAndOverlapIsDropped) {
    // Version 1 for the first two requests, then version 2, which overlaps it by one record.
    TinyHttpServer server([](const std::string& request, size_t index) {
        int version = index < 2 ? 1 : 2;
        std::string etag = "\"v" + std::to_string(version) + "\"";
        if (has_header(request, "If-None-Match: " + etag)) return TinyHttpServer::response(304, "ETag: " + etag + "\r\n", "");
        return TinyHttpServer::response(200, "ETag: " + etag + "\r\n", version == 1 ? items({1, 2}) : items({2, 3}));
    });
    Fixture f;
    stream::HttpOptions options;
    options.url = server.url();
    options.interval = 20ms;
    options.records = "data.items";
    options.headers = {"Authorization: Bearer t0ken"};
    stream::HttpSource source(options, {}, &f.stop, f.log, f.metrics, {});
    auto values = run_until(source, [&] { return server.requests().size() >= 4; });
    EXPECT_EQ(values, (std::vector<int64_t>{1, 2, 3}));
    auto requests = server.requests();
    EXPECT_FALSE(has_header(requests[0], "If-None-Match: \"v1\""));
    EXPECT_TRUE(has_header(requests[0], "Authorization: Bearer t0ken"));
    EXPECT_TRUE(has_header(requests[1], "If-None-Match: \"v1\""));  // answered 304
    EXPECT_TRUE(has_header(requests[2], "If-None-Match: \"v1\""));  // answered with v2
    EXPECT_TRUE(has_header(requests[3], "If-None-Match: \"v2\""));
    EXPECT_EQ(source.duplicates(), 1u);
    EXPECT_NE(f.metrics.render().find("mh_stream_polls_total{result=\"not_modified\"}"), std::string::npos);
}

TEST(HttpSource, SendsLastModifiedBackAsIfModifiedSince) {
    const std::string stamp = "Wed, 21 Oct 2026 07:28:00 GMT";
    TinyHttpServer server([&](const std::string& request, size_t) {
        if (has_header(request, "If-Modified-Since: " + stamp)) return TinyHttpServer::response(304, "", "");
        return TinyHttpServer::response(200, "Last-Modified: " + stamp + "\r\n", items({7}));
    });
    Fixture f;
    stream::HttpOptions options;
    options.url = server.url();
    options.interval = 20ms;
    options.records = "data.items";
    stream::HttpSource source(options, {}, &f.stop, f.log, f.metrics, {});
    auto values = run_until(source, [&] { return server.requests().size() >= 3; });
    EXPECT_EQ(values, (std::vector<int64_t>{7}));
    EXPECT_TRUE(has_header(server.requests()[2], "If-Modified-Since: " + stamp));
}

TEST(HttpSource, ByKeyAChangedRecordWithAKnownKeyIsStillADuplicate) {
    // No validators: every poll is a 200 with the whole list.
    TinyHttpServer server([](const std::string&, size_t index) {
        std::string body = index == 0 ? R"([{"item":"a","n":1},{"item":"b","n":2}])"
                                      : R"([{"item":"a","n":10},{"item":"c","n":3}])";
        return TinyHttpServer::response(200, "", body);
    });
    Fixture f;
    stream::HttpOptions options;
    options.url = server.url();
    options.interval = 20ms;
    options.key = "item";
    stream::HttpSource source(options, {}, &f.stop, f.log, f.metrics, {});
    auto values = run_until(source, [&] { return server.requests().size() >= 3; });
    EXPECT_EQ(values, (std::vector<int64_t>{1, 2, 3}));
}

TEST(HttpSource, FailuresAreCountedAndPollingGoesOn) {
    TinyHttpServer server([](const std::string&, size_t index) {
        if (index == 0) return TinyHttpServer::response(500, "", "oops");
        if (index == 1) return TinyHttpServer::response(200, "", "{not json");
        return TinyHttpServer::response(200, "", items({5}));
    });
    Fixture f;
    stream::HttpOptions options;
    options.url = server.url();
    options.interval = 20ms;
    options.records = "data.items";
    stream::HttpSource source(options, {}, &f.stop, f.log, f.metrics, {});
    auto values = run_until(source, [&] { return server.requests().size() >= 3; });
    EXPECT_EQ(values, (std::vector<int64_t>{5}));
    EXPECT_NE(f.metrics.render().find("mh_stream_polls_total{result=\"failed\"} 2"), std::string::npos)
        << f.metrics.render();
}

TEST(HttpSource, AServerThatIsGoneIsAFailedPollNotAnError) {
    int port;
    {
        TinyHttpServer gone([](const std::string&, size_t) { return std::string(); });
        port = std::stoi(gone.url().substr(17));
    }
    Fixture f;
    stream::HttpOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(port) + "/api";
    options.interval = 20ms;
    stream::HttpSource source(options, {}, &f.stop, f.log, f.metrics, {});
    run_until(source, [&] { return source.polls() >= 2; });
    EXPECT_NE(f.metrics.render().find("mh_stream_polls_total{result=\"failed\"}"), std::string::npos);
}

TEST(HttpSource, AStopEndsTheSource) {
    TinyHttpServer server([](const std::string&, size_t) { return TinyHttpServer::response(200, "", "[]"); });
    Fixture f;
    stream::HttpOptions options;
    options.url = server.url();
    options.interval = 1h;
    stream::HttpSource source(options, {}, &f.stop, f.log, f.metrics, {});
    wire::Frame frame;
    EXPECT_EQ(source.next(wire::Wait::no, frame), wire::Next::idle);
    f.stop = true;
    EXPECT_EQ(source.next(wire::Wait::yes, frame), wire::Next::end);
}

TEST(HttpSource, BadOptionsAreUsageErrors) {
    Fixture f;
    stream::HttpOptions options;
    options.url = "ftp://example/x";
    EXPECT_THROW(stream::HttpSource(options, {}, &f.stop, f.log, f.metrics, {}), mh::Error);
    options.url = "http://127.0.0.1/x";
    options.headers = {"no colon"};
    EXPECT_THROW(stream::HttpSource(options, {}, &f.stop, f.log, f.metrics, {}), mh::Error);
}

}  // namespace
