// Messages per second through the transport-free protocol engines, without sockets or TLS:
// what the endpoint's MQTT and HTTP paths cost per message on top of the network.
//
//   protocols_bench [MESSAGES]    (default 1,000,000)
//
// mqtt qos0/qos1: a ServerSession fed PUBLISH packets of ~150-byte JSON telemetry in 16 KiB
//   reads (as a TLS record gives them), the handler accepting each (QoS 1: a PUBACK each).
// http ndjson: POST requests of 100 JSON lines each through the request parser and the body
//   decoder (JSON lines -> frames, lib/json), then a 202 response written.
#include "http/body.h"
#include "http/request.h"
#include "http/response.h"
#include "mqtt/session.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

std::string telemetry(size_t i) {
    char text[200];
    int n = std::snprintf(text, sizeof(text),
                          "{\"time\":%llu,\"kind\":\"telemetry\",\"temperature\":%.2f,\"humidity\":%.1f,"
                          "\"pressure\":%.1f,\"battery\":%.2f,\"status\":\"ok\"}",
                          1767225600000000000ULL + i * 1000000ULL, 20 + (i % 100) / 10.0,
                          40 + (i % 37) / 2.0, 1013 + (i % 11) / 10.0, 3.7 - (i % 7) / 100.0);
    return std::string(text, n);
}

class Accept : public mh::mqtt::SessionHandler {
public:
    mh::mqtt::ConnectDecision authenticate(const mh::mqtt::ConnectRequest&) override { return {}; }
    mh::mqtt::PublishOutcome on_publish(const mh::mqtt::Publish& publish) override {
        bytes += publish.payload.size();
        ++count;
        return mh::mqtt::PublishOutcome::accepted;
    }
    std::optional<mh::mqtt::QoS> may_subscribe(std::string_view, mh::mqtt::QoS q) override { return q; }
    size_t count = 0, bytes = 0;
};

void bench_mqtt(size_t messages, mh::mqtt::QoS qos) {
    using namespace mh::mqtt;
    // One stream of packets, fed in 16 KiB pieces.
    std::string stream;
    Connect connect;
    connect.client_id = "gw-01";
    encode(stream, connect);
    constexpr size_t k_distinct = 1000;
    std::string packets;
    for (size_t i = 0; i < k_distinct; ++i) {
        std::string payload = telemetry(i);
        std::string topic = "telemetry/sensor-" + std::to_string(i % 64);
        encode(packets, Publish{topic, payload, qos, false, false,
                                static_cast<uint16_t>(qos == QoS::at_most_once ? 0 : i % 65535 + 1)});
    }
    Accept handler;
    ServerSession session(handler, {}, Clock::now());
    session.receive(stream, Clock::now());
    session.consume_output(session.output().size());
    constexpr size_t k_read_bytes = 16 * 1024;
    auto start = Clock::now();
    size_t rounds = (messages + k_distinct - 1) / k_distinct;
    size_t output_bytes = 0;
    for (size_t r = 0; r < rounds; ++r) {
        for (size_t at = 0; at < packets.size(); at += k_read_bytes) {
            session.receive(std::string_view(packets).substr(at, k_read_bytes), Clock::now());
            output_bytes += session.output().size();
            session.consume_output(session.output().size());
        }
    }
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (session.closed() || handler.count != rounds * k_distinct) {
        std::fprintf(stderr, "protocols_bench: mqtt session failed: %s\n", describe(session.close_cause()));
        std::exit(1);
    }
    std::printf("mqtt  qos%d publish  %9.2f M msgs/s  (%zu messages, %.0f MB/s payload, %zu bytes of acks)\n",
                static_cast<int>(qos), handler.count / seconds / 1e6, handler.count,
                handler.bytes / seconds / 1e6, output_bytes);
}

void bench_http(size_t messages) {
    using namespace mh::http;
    constexpr size_t k_lines_per_request = 100;
    std::string body;
    for (size_t i = 0; i < k_lines_per_request; ++i) body += telemetry(i) + "\n";
    std::string request = "POST /v1/messages HTTP/1.1\r\nHost: endpoint\r\nAuthorization: Bearer "
                          "gw-01.1767225600.c2lnbmF0dXJl\r\nContent-Type: application/x-ndjson\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    RequestParser parser;
    BodyDecoder decoder;
    Request parsed;
    std::vector<std::byte> frames;
    std::string output;
    size_t requests = (messages + k_lines_per_request - 1) / k_lines_per_request;
    size_t accepted = 0;
    auto start = Clock::now();
    for (size_t r = 0; r < requests; ++r) {
        for (size_t at = 0; at < request.size(); at += 16 * 1024) {
            parser.feed(std::string_view(request).substr(at, 16 * 1024));
            ParseStatus status;
            while ((status = parser.next(parsed)) != ParseStatus::need_more) {
                if (status != ParseStatus::request) continue;
                if (!bearer_token(parsed)) std::exit(1);
                frames.clear();
                auto result = decoder.decode(parsed.header("Content-Type").value_or(""), parsed.body, frames);
                accepted += result.accepted;
                output.clear();
                write(output, Response{202, "application/json", "{\"accepted\":100}", {}, false, {}});
            }
        }
    }
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (accepted != requests * k_lines_per_request) {
        std::fprintf(stderr, "protocols_bench: http accepted %zu of %zu\n", accepted, requests * k_lines_per_request);
        std::exit(1);
    }
    std::printf("http  ndjson POST  %9.2f M msgs/s  (%zu messages in %zu requests of %zu bytes)\n",
                accepted / seconds / 1e6, accepted, requests, request.size());
}

}  // namespace

int main(int argc, char** argv) {
    size_t messages = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
    bench_mqtt(messages, mh::mqtt::QoS::at_most_once);
    bench_mqtt(messages, mh::mqtt::QoS::at_least_once);
    bench_http(messages);
}
