// Fuzzes the MQTT packet reader and the server session with a byte stream from a client.
// The first byte picks how the stream is cut into reads. Every packet the reader accepts
// must encode to bytes that read back as the same packet, and the session must end in a
// defined state whatever comes.
#include "mqtt/packet.h"
#include "mqtt/session.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

using namespace mh::mqtt;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "mqtt_packet_fuzz: %s\n", what);
    std::abort();
}

// Says yes to everything, defers every other publish, and delivers a command on each
// subscription, so that every path of the session is reachable.
class Permissive : public SessionHandler {
public:
    ServerSession* session = nullptr;
    ConnectDecision authenticate(const ConnectRequest&) override {
        return {ConnectCode::accepted, std::make_shared<SessionState>()};
    }
    PublishOutcome on_publish(const Publish& publish) override {
        if (publish.payload == "quota") return PublishOutcome::over_quota;
        return (++count % 2) ? PublishOutcome::deferred : PublishOutcome::accepted;
    }
    std::optional<QoS> may_subscribe(std::string_view filter, QoS requested) override {
        if (filter == "no") return std::nullopt;
        return requested;
    }
    void on_subscribed(std::string_view filter, QoS qos) override {
        // A filter is not a name when it has wildcards: deliver() must refuse those cleanly.
        session->deliver(filter, "command", qos, count);
    }
    int count = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    size_t chunk = (data[0] % 16) + 1;
    std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

    PacketReader reader(4096);
    Packet packet;
    for (size_t at = 0; at < input.size(); at += chunk) {
        reader.feed(input.substr(at, chunk));
        ReadStatus status;
        while ((status = reader.next(packet)) == ReadStatus::packet) {
            std::string once;
            encode(once, packet);
            PacketReader again(once.size());
            again.feed(once);
            Packet copy;
            if (again.next(copy) != ReadStatus::packet) fail("an accepted packet does not read back");
            std::string twice;
            encode(twice, copy);
            if (once != twice) fail("a packet reads back differently");
        }
        if (status == ReadStatus::error && !reader.error()) fail("error without a reason");
    }

    Permissive handler;
    SessionOptions options;
    options.max_inflight = 2;
    options.max_queued = 4;
    options.max_pending_acks = 8;
    ServerSession session(handler, options, TimePoint{});
    handler.session = &session;
    uint16_t acknowledged = 1;
    for (size_t at = 0; at < input.size() && !session.closed(); at += chunk) {
        session.receive(input.substr(at, chunk), TimePoint{});
        session.acknowledge(acknowledged++);
        session.consume_output(session.output().size() / 2);
    }
    session.tick(TimePoint::max() - std::chrono::hours(1));
    if (session.state() == ServerSession::State::connected && session.keep_alive_s() != 0)
        fail("keep-alive deadline not enforced");
    session.close();
    if (!session.closed()) fail("close() did not close");
    return 0;
}
