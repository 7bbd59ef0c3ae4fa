// Frames from an MQTT subscription to another system's broker, through libmosquitto (the
// Eclipse Mosquitto client library, as Debian ships it) rather than a client of our own.
// One thread: next() drives the client's network loop, so a slow downstream slows the
// reading of the socket (TCP back-pressure on the broker) instead of growing a queue.
// Connection losses and refusals of a connect are retried with exponential back-off, and
// the subscriptions are made again on every connect.
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "ingest/mapping.h"
#include "wire/stream.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

struct mosquitto;
struct mosquitto_message;

namespace mh::stream {

constexpr int k_mqtt_port = 1883;
constexpr int k_mqtts_port = 8883;
constexpr auto k_reconnect_min = std::chrono::milliseconds(250);
constexpr auto k_reconnect_max = std::chrono::seconds(30);

struct BrokerAddress {
    bool tls = false;
    std::string host;
    int port = 0;
};

// mqtt://host[:port] or mqtts://host[:port]; an IPv6 host in brackets. Returns why not.
std::variant<BrokerAddress, std::string> parse_broker_url(std::string_view url);

struct MqttOptions {
    std::string broker;               // mqtt://host:port or mqtts://host:port
    std::vector<std::string> topics;  // filters with + and # wildcards
    int qos = 0;
    std::string client_id;            // a named client keeps its session across reconnects
    std::string username, password;
    std::string cert, key, cafile;    // client certificate and key; CA bundle (else the system's)
    int keepalive_s = 30;
    std::optional<unsigned> source_level, kind_level;  // topic levels, from 0
};

// The topic's level `index` (levels counted from 0), empty when it has fewer.
std::string_view topic_level(std::string_view topic, unsigned index);

class MqttSource final : public wire::FrameSource {
public:
    // Throws Error(usage/config) for a bad URL or unreadable TLS files; connects lazily.
    MqttSource(const MqttOptions& options, const ingest::MappingOptions& mapping, const StopFlag* stop,
               Log& log, wire::FrameLimits limits);
    ~MqttSource() override;
    MqttSource(const MqttSource&) = delete;
    MqttSource& operator=(const MqttSource&) = delete;

    // A refused login or subscription throws Error(config); everything else is retried.
    wire::Next next(wire::Wait wait, wire::Frame& frame) override;
    uint64_t rejected() const override { return m_rejected; }

    uint64_t connects() const { return m_connects; }

    // libmosquitto's callbacks, through trampolines.
    void on_connect(int rc);
    void on_disconnect(int rc);
    void on_subscribe(int mid, int count, const int* granted);
    void on_message(const mosquitto_message* message);

private:
    bool try_connect();
    void connection_lost(int rc);
    void wait_for_retry(wire::Wait wait);

    MqttOptions m_options;
    BrokerAddress m_address;
    const StopFlag* m_stop;
    Log& m_log;
    wire::FrameLimits m_limits;
    ingest::Mapper m_mapper;
    mosquitto* m_client = nullptr;

    bool m_connected = false;  // the socket is up (CONNACK may still be pending)
    std::chrono::steady_clock::time_point m_next_attempt{};
    std::chrono::milliseconds m_backoff = k_reconnect_min;
    std::map<int, std::string> m_pending_subscriptions;  // mid -> topic
    std::optional<std::string> m_fatal;  // a refusal that retrying will not cure
    uint64_t m_connects = 0;
    uint64_t m_failed_attempts = 0;

    std::deque<std::vector<std::byte>> m_ready;
    std::vector<std::vector<std::byte>> m_spare;
    std::vector<std::byte> m_current;
    uint64_t m_rejected = 0;
};

}  // namespace mh::stream
