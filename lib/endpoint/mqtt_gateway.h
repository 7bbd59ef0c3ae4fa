// MQTT 3.1.1 over TLS for gateways, on lib/mqtt's transport-free ServerSession:
//   CONNECT   user name = gateway id, password = its token; or a client certificate
//             (the user name, if given, must then be the certificate's gateway)
//   PUBLISH   telemetry/<source> with a JSON object payload -> a message of kind telemetry
//             for that source, the payload's keys as fields (lib/json's mapping). QoS 0 and
//             1 (2 is taken as 1 is: acknowledged once handed over); PUBACK only after the
//             message is in the output. A refused message (foreign source, malformed JSON,
//             another topic) is acknowledged and dropped (MQTT 3.1.1 has no negative ack),
//             counted and logged; over quota or oversized, the connection is closed.
//   PUBLISH   replies/<gateway>[/<source>] with a JSON object payload carrying correlation_id:
//             a device's reply to a command (lib/command), checked as telemetry is (its own
//             gateway only, the source one it may publish for, the quota); PUBACK once its
//             acknowledged status is in the output.
//   SUBSCRIBE commands/<gateway> or below it (commands/<gateway>/#): commands for this
//             gateway arrive there as JSON, on commands/<gateway>/<source> when addressed
//             to a source. Any other filter is refused.
// Persistent sessions (clean session 0) keep subscriptions and undelivered QoS 1
// commands per gateway and client id for as long as the endpoint runs.
#pragma once

#include "endpoint/server.h"
#include "json/json_codec.h"
#include "mqtt/session.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mh::endpoint {

constexpr std::string_view k_telemetry_prefix = "telemetry/";
constexpr std::string_view k_commands_prefix = "commands/";
constexpr std::string_view k_replies_prefix = "replies/";

class MqttGatewaySession final : public Session, public mqtt::SessionHandler {
public:
    MqttGatewaySession(Connection& connection, int64_t connect_timeout_ns);
    ~MqttGatewaySession() override;

    size_t receive(std::span<const std::byte> data) override;
    void flushed() override;
    bool deliver(const wire::Frame& frame, const command::Ref& ref) override;
    void tick(int64_t monotonic_ns) override;

    mqtt::ConnectDecision authenticate(const mqtt::ConnectRequest& request) override;
    void on_connected(bool session_present) override;
    mqtt::PublishOutcome on_publish(const mqtt::Publish& publish) override;
    std::optional<mqtt::QoS> may_subscribe(std::string_view filter, mqtt::QoS requested) override;
    void on_subscribed(std::string_view filter, mqtt::QoS granted) override;
    void on_delivered(uint64_t tag) override;

    void take_over();  // another connection of the same client id takes the session

private:
    void pump();  // output to the connection; the end of the session ends the connection
    mqtt::PublishOutcome on_reply(const mqtt::Publish& publish);
    mqtt::PublishOutcome outcome(Verdict verdict, const mqtt::Publish& publish, bool batch_ack);

    Connection& m_connection;
    mqtt::ServerSession m_session;
    std::string m_slot_key;
    std::vector<uint16_t> m_to_acknowledge;
    std::vector<uint64_t> m_in_flight;  // tags of QoS 1 commands awaiting their PUBACK (clean sessions)
    bool m_persistent = false;          // clean session 0: what is in flight stays with the session
    JsonEncoder m_encoder;
    std::string m_payload;
    bool m_closed = false;
};

}  // namespace mh::endpoint
