// Frames as lines for people to read (mh-cat --to text), one per message:
//
//   2026-11-26T15:20:42.123Z sensor-000123 gw-01 telemetry temperature=21.5 status="ok" body=12B
//   --- barrier 12 at 2026-11-26T15:20:43Z ---
//
// Event time (RFC 3339), source, gateway, kind ("-" for what is unset), the fields as
// name=value with text quoted, and the body's size. Not meant to be parsed: use JSON.
#pragma once

#include "wire/fd_output.h"
#include "wire/stream.h"

#include "schema/message.capnp.h"

#include <cstdint>
#include <string>

namespace mh {

class TextSink final : public wire::FrameSink {
public:
    explicit TextSink(int fd, wire::FrameLimits limits = {});

    // A frame Cap'n Proto cannot read shows as "--- unreadable frame: REASON ---".
    void write(const wire::Frame& frame) override;
    void flush() override { m_output.flush(); }

    uint64_t rejected() const { return m_rejected; }

    // The line for one message, without its '\n', appended to `out`.
    static void format(schema::Message::Reader message, std::string& out);

private:
    wire::FdOutput m_output;
    wire::FrameLimits m_limits;
    std::string m_line;
    uint64_t m_rejected = 0;
};

}  // namespace mh
