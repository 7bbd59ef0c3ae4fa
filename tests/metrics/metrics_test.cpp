// Counters and histograms in the Prometheus text format, served over HTTP.
#include "core/error.h"
#include "metrics/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace mh::metrics;

TEST(Registry, RendersCountersWithHelpTypeAndLabels) {
    Registry registry;
    registry.counter("mh_messages_in_total", "Messages read").add(3);
    registry.counter("mh_dropped_total", "Dropped", "reason=\"malformed\"").add(2);
    registry.counter("mh_dropped_total", "Dropped", "reason=\"limit\"");
    std::string text = registry.render();
    EXPECT_NE(text.find("# TYPE mh_messages_in_total counter\nmh_messages_in_total 3\n"), std::string::npos);
    EXPECT_NE(text.find("mh_dropped_total{reason=\"malformed\"} 2\nmh_dropped_total{reason=\"limit\"} 0\n"),
              std::string::npos)
        << text;
    EXPECT_EQ(text.find("# TYPE mh_dropped_total"), text.rfind("# TYPE mh_dropped_total"));
}

TEST(Registry, GroupsSamplesOfOneNameUnderOneHelpLine) {
    Registry registry;
    registry.counter("mh_dropped_total", "Dropped", "reason=\"malformed\"");
    registry.counter("mh_errors_total", "Errors");
    registry.counter("mh_dropped_total", "Dropped", "reason=\"filtered\"").add(4);
    std::string text = registry.render();
    EXPECT_EQ(text.find("# HELP mh_dropped_total"), text.rfind("# HELP mh_dropped_total")) << text;
    EXPECT_NE(text.find("mh_dropped_total{reason=\"malformed\"} 0\nmh_dropped_total{reason=\"filtered\"} 4\n"),
              std::string::npos)
        << text;
}

TEST(Registry, SameNameAndLabelsIsTheSameCounter) {
    Registry registry;
    registry.counter("x_total", "x").add();
    registry.counter("x_total", "x").add();
    EXPECT_EQ(registry.counter("x_total", "x").value(), 2u);
}

TEST(Registry, RendersCumulativeHistogramBuckets) {
    Registry registry;
    auto& h = registry.histogram("mh_flush_seconds", "Flush latency");
    h.observe_ns(20'000);       // 20 us
    h.observe_ns(2'000'000);    // 2 ms
    h.observe_ns(60'000'000'000);  // beyond the last bucket
    std::string text = registry.render();
    EXPECT_NE(text.find("mh_flush_seconds_bucket{le=\"1e-05\"} 0\n"), std::string::npos) << text;
    EXPECT_NE(text.find("mh_flush_seconds_bucket{le=\"5e-05\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("mh_flush_seconds_bucket{le=\"0.005\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("mh_flush_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("mh_flush_seconds_count 3\n"), std::string::npos) << text;
}

TEST(Server, AnswersAnHttpGetWithTheMetrics) {
    Registry registry;
    registry.counter("mh_messages_out_total", "out").add(7);
    mh::Log log("test");
    Server server(registry, "127.0.0.1:0", log);
    ASSERT_GT(server.port(), 0);

    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(server.port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
    std::string response;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, n);
    ::close(fd);
    EXPECT_EQ(response.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
    EXPECT_NE(response.find("mh_messages_out_total 7\n"), std::string::npos);
}

TEST(Server, RefusesABadAddress) {
    Registry registry;
    mh::Log log("test");
    EXPECT_THROW(Server(registry, "no-port-here", log), mh::Error);
}
