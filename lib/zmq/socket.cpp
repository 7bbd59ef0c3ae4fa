#include "zmq/socket.h"

#include "core/error.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace mh::zmq {
namespace {
[[noreturn]] void fail(const char* call, ExitCode code = ExitCode::unavailable) {
    throw Error(code, fmt::format("{} failed: {}", call, zmq_strerror(zmq_errno())));
}

int socket_type(Pattern pattern) {
    switch (pattern) {
        case Pattern::push: return ZMQ_PUSH;
        case Pattern::pull: return ZMQ_PULL;
        case Pattern::pub: return ZMQ_PUB;
        case Pattern::sub: return ZMQ_SUB;
    }
    return ZMQ_PUSH;
}

void set_int(void* socket, int option, int value, const char* name) {
    if (zmq_setsockopt(socket, option, &value, sizeof(value)) != 0) fail(name, ExitCode::software);
}
}  // namespace

Context::Context(const StopFlag* stop, Log* log) : m_context(zmq_ctx_new()), m_stop(stop), m_log(log) {
    if (!m_context) fail("zmq_ctx_new", ExitCode::software);
    try {
        m_curve = curve_from_environment();
        if (m_curve) m_zap = std::make_unique<ZapHandler>(m_context, m_curve->clients, m_log);
    } catch (...) {
        zmq_ctx_term(m_context);
        throw;
    }
}

Context::~Context() {
    m_zap.reset();  // its socket must be closed before the context can end
    while (zmq_ctx_term(m_context) != 0 && zmq_errno() == EINTR) {
        if (m_stop && m_stop->load(std::memory_order_relaxed)) {
            if (m_log) m_log->warn("stopped while waiting to deliver queued messages to a peer that is not reading: they are lost");
            return;  // the process is ending; the context goes with it
        }
    }
}

Socket::Socket(Context& context, const Endpoint& endpoint)
    : m_socket(zmq_socket(context.get(), socket_type(endpoint.pattern))) {
    if (!m_socket) fail("zmq_socket", ExitCode::software);
    // Deliver everything queued before close: a stop must not lose accepted messages.
    set_int(m_socket, ZMQ_LINGER, -1, "zmq_setsockopt(ZMQ_LINGER)");
    set_int(m_socket, ZMQ_SNDHWM, k_high_water_batches, "zmq_setsockopt(ZMQ_SNDHWM)");
    set_int(m_socket, ZMQ_RCVHWM, k_high_water_batches, "zmq_setsockopt(ZMQ_RCVHWM)");
    if (endpoint.pattern == Pattern::sub && zmq_setsockopt(m_socket, ZMQ_SUBSCRIBE, "", 0) != 0)
        fail("zmq_setsockopt(ZMQ_SUBSCRIBE)", ExitCode::software);
    for (const auto& attachment : endpoint.attachments) {
        if (const CurveConfig* curve = context.curve()) {
            try {
                apply_curve(m_socket, *curve, attachment);
            } catch (...) {
                zmq_close(m_socket);
                throw;
            }
        }
        std::string_view address = attachment.address;
        if (attachment.bind && (address.ends_with(":0") || address.ends_with(":*"))) m_binds_any_port = true;
        // "tcp://[fd00::2]:7400": ZeroMQ resolves IPv6 only on a socket that allows it.
        if (address.starts_with("tcp://[")) set_int(m_socket, ZMQ_IPV6, 1, "zmq_setsockopt(ZMQ_IPV6)");
        int rc = attachment.bind ? zmq_bind(m_socket, attachment.address.c_str())
                                 : zmq_connect(m_socket, attachment.address.c_str());
        if (rc != 0) {
            std::string reason = zmq_strerror(zmq_errno());
            zmq_close(m_socket);
            throw Error(ExitCode::unavailable,
                        fmt::format("cannot {} {}: {}", attachment.bind ? "bind" : "connect",
                                    attachment.address, reason));
        }
    }
}

Socket::~Socket() { zmq_close(m_socket); }

std::string Socket::last_endpoint() const {
    char buffer[256];
    size_t size = sizeof(buffer);
    if (zmq_getsockopt(m_socket, ZMQ_LAST_ENDPOINT, buffer, &size) != 0) return {};
    return std::string(buffer);
}

ZmqFrameWriter::ZmqFrameWriter(Context& context, const Endpoint& endpoint)
    : m_socket(context, endpoint) {
    m_batch.reserve(k_batch_bytes + wire::k_default_max_frame_bytes / 16);
}

void ZmqFrameWriter::write(const wire::Frame& frame) {
    if (!m_batch.empty() && m_batch.size() + frame.byte_count() > k_batch_bytes) flush();
    auto bytes = frame.bytes();
    m_batch.insert(m_batch.end(), bytes.begin(), bytes.end());
}

void ZmqFrameWriter::flush() {
    if (m_batch.empty()) return;
    // Blocks while the peer's queue is full: back-pressure, never a silent drop.
    // (PUB sockets drop for slow subscribers by ZeroMQ's design; they are for taps.)
    while (zmq_send(m_socket.get(), m_batch.data(), m_batch.size(), 0) < 0) {
        if (zmq_errno() == EINTR) continue;  // a stop request: we still owe this batch
        fail("zmq_send", ExitCode::io);
    }
    m_batch.clear();
}

ZmqFrameReader::ZmqFrameReader(Context& context, const Endpoint& endpoint, const StopFlag* stop,
                               wire::FrameLimits limits)
    : m_socket(context, endpoint), m_stop(stop), m_limits(limits) {
    zmq_msg_init(&m_message);
}

ZmqFrameReader::~ZmqFrameReader() { zmq_msg_close(&m_message); }

bool ZmqFrameReader::receive(wire::Wait wait) {
    for (;;) {
        if (m_stop && m_stop->load(std::memory_order_relaxed)) return false;
        int flags = wait == wire::Wait::no ? ZMQ_DONTWAIT : 0;
        int size = zmq_msg_recv(&m_message, m_socket.get(), flags);
        if (size >= 0) break;
        if (zmq_errno() == EAGAIN) return false;
        if (zmq_errno() == EINTR) continue;
        fail("zmq_msg_recv", ExitCode::io);
    }
    auto* data = static_cast<const std::byte*>(zmq_msg_data(&m_message));
    size_t size = zmq_msg_size(&m_message);
    if (reinterpret_cast<uintptr_t>(data) % sizeof(capnp::word) != 0) {
        // Cap'n Proto reads words in place; ZeroMQ gives no alignment promise.
        m_aligned.resize((size + sizeof(capnp::word) - 1) / sizeof(capnp::word));
        std::memcpy(m_aligned.data(), data, size);
        data = reinterpret_cast<const std::byte*>(m_aligned.data());
    }
    m_cursor = data;
    m_batch_end = data + size;
    return true;
}

wire::Next ZmqFrameReader::next(wire::Wait wait, wire::Frame& frame) {
    for (;;) {
        if (m_cursor < m_batch_end) {
            auto scan = wire::scan_frame({m_cursor, static_cast<size_t>(m_batch_end - m_cursor)}, m_limits);
            if (scan.status == wire::ScanStatus::complete) {
                frame.words = reinterpret_cast<const capnp::word*>(m_cursor);
                frame.word_count = scan.frame_bytes / sizeof(capnp::word);
                m_cursor += scan.frame_bytes;
                return wire::Next::frame;
            }
            // One peer's bad bytes cost that batch's rest, never the stream.
            ++m_rejected;
            m_last_rejection = fmt::format("dropped the rest of a ZeroMQ message: {} bytes that are not whole frames",
                                           m_batch_end - m_cursor);
            m_cursor = m_batch_end;
        }
        if (!receive(wait)) {
            bool stopping = m_stop && m_stop->load(std::memory_order_relaxed);
            return stopping || wait == wire::Wait::yes ? wire::Next::end : wire::Next::idle;
        }
    }
}

}  // namespace mh::zmq
