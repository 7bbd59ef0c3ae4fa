// ZeroMQ frame transport: a batch of frames per ZeroMQ message, blocking sends for
// back-pressure, and word-aligned reads. main() owns the Context and passes it down.
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "wire/stream.h"
#include "zmq/curve.h"
#include "zmq/endpoint.h"

#include <zmq.h>

#include <memory>
#include <vector>

namespace mh::zmq {

constexpr size_t k_batch_bytes = 64 << 10;  // frames per ZeroMQ message, up to this size
constexpr int k_high_water_batches = 64;    // queued batches per peer before a send blocks

// Closing waits until every queued message is delivered (sockets linger forever), so a
// finished sender loses nothing. If that wait is interrupted by a stop request (SIGTERM
// or SIGINT while a peer is gone), it gives up and says so rather than hang.
class Context {
public:
    explicit Context(const StopFlag* stop = nullptr, Log* log = nullptr);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
    void* get() const { return m_context; }
    // CURVE for tcp attachments, from the environment (see zmq/curve.h); null when off.
    const CurveConfig* curve() const { return m_curve ? &*m_curve : nullptr; }

private:
    void* m_context;
    const StopFlag* m_stop;
    Log* m_log;
    std::optional<CurveConfig> m_curve;
    std::unique_ptr<ZapHandler> m_zap;
};

// A socket attached to every address of an endpoint; closed in the destructor.
class Socket {
public:
    Socket(Context& context, const Endpoint& endpoint);
    ~Socket();
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    void* get() const { return m_socket; }
    // The address a "tcp://*:0"-style bind ended up on, for tests and logs.
    std::string last_endpoint() const;
    bool binds_any_port() const { return m_binds_any_port; }

private:
    void* m_socket;
    bool m_binds_any_port = false;
};

class ZmqFrameWriter final : public wire::FrameSink {
public:
    ZmqFrameWriter(Context& context, const Endpoint& endpoint);
    void write(const wire::Frame& frame) override;
    void flush() override;
    const Socket& socket() const { return m_socket; }

private:
    Socket m_socket;
    std::vector<std::byte> m_batch;
};

class ZmqFrameReader final : public wire::FrameSource {
public:
    ZmqFrameReader(Context& context, const Endpoint& endpoint, const StopFlag* stop,
                   wire::FrameLimits limits = {});
    ~ZmqFrameReader() override;
    wire::Next next(wire::Wait wait, wire::Frame& frame) override;
    uint64_t rejected() const override { return m_rejected; }
    std::string error() const override { return m_last_rejection; }
    const Socket& socket() const { return m_socket; }

private:
    bool receive(wire::Wait wait);  // false when nothing arrived (idle or stop)

    Socket m_socket;
    const StopFlag* m_stop;
    wire::FrameLimits m_limits;
    zmq_msg_t m_message;
    std::vector<capnp::word> m_aligned;  // copy of a batch whose bytes were not word aligned
    const std::byte* m_cursor = nullptr;
    const std::byte* m_batch_end = nullptr;
    uint64_t m_rejected = 0;
    std::string m_last_rejection;
};

}  // namespace mh::zmq
