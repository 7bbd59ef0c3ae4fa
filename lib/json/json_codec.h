// JSON lines <-> frames, as DESIGN.md "The message" maps them, for mh-cat, HTTP and MQTT
// payloads. One JSON object per message:
//
//   {"id":"0190a6b2-...","time":1764170442123000000,"ingested":...,"source":"sensor-000123",
//    "gateway":"gw-01","kind":"telemetry","temperature":21.5,"motor":{"rpm":1200},"body":"..."}
//
// Top-level id (UUID text, dashed or 32 hex), time and ingested (integer ns or RFC 3339
// text), source, gateway, kind (strings) and body (a string = its UTF-8 bytes, or
// {"base64":"..."}) fill the message header; null leaves one unset. Every other key is a
// field: integer -> int, number with a fraction or exponent -> float, string -> text,
// true/false -> bool, nested object -> flattened to dotted names ("motor.rpm"), and what
// has no scalar form (arrays, null, integers beyond int64, empty objects) -> the json
// variant holding its JSON text. A duplicate key: the last value wins, in the place of the
// first. A checkpoint barrier is {"$barrier":N,"time":T}.
//
// Writing inverts it: key order id, time, ingested, source, gateway, kind, fields, body;
// what is empty or zero is left out; floats always carry a '.' or an exponent so they read
// back as floats; dotted names nest again. JSON -> frame -> JSON gives the same bytes for a
// flat object in that key order without spaces; for the rest it gives the same message.
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "schema/message.capnp.h"
#include "wire/fd_output.h"
#include "wire/line_reader.h"
#include "wire/frame_opener.h"
#include "wire/message_view.h"
#include "wire/stream.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mh {

constexpr size_t k_max_fields = 1024;    // per message, from any text format
constexpr size_t k_max_json_depth = 32;  // nesting of objects and arrays, the line's own included

// How times are written: integer nanoseconds (exact, the default) or RFC 3339 text.
enum class TimeFormat { nanoseconds, rfc3339 };

// What a text source does with a bad line: skip it (counted and logged) or stop the input.
enum class Strict { no, yes };

// Whether the caller's text is followed by wire::k_read_padding_bytes readable bytes, which
// lets the parser read it in place (LineReader's lines are); otherwise it is copied first.
enum class Padding { absent, present };

// How a JsonDecoder reads and writes. `fast`: a plain object of scalars (and nested
// objects) without escapes is read by a scanner of its own and its frame written directly;
// everything else goes the reference way. `reference`: simdjson reads every line and Cap'n
// Proto's builder writes every frame. Both give the same bytes and the same refusals; the
// reference exists for tests and the fuzzer to check the fast one against.
enum class DecodePath { fast, reference };

// One JSON object -> one frame. Reuses its parser and builder: after the first few lines a
// decode allocates nothing. Not thread-safe; one per thread.
class JsonDecoder {
public:
    explicit JsonDecoder(DecodePath path = DecodePath::fast);
    ~JsonDecoder();
    JsonDecoder(const JsonDecoder&) = delete;
    JsonDecoder& operator=(const JsonDecoder&) = delete;

    // Appends one frame to `out`, or returns why `line` is not a message and leaves `out`
    // as it was. Reasons read "time: expected integer nanoseconds or RFC 3339 text",
    // "expected a JSON object", "invalid JSON in \"motor.rpm\": <simdjson's text>", ...
    std::optional<std::string> decode(std::string_view line, std::vector<std::byte>& out,
                                      Padding padding = Padding::absent);
    // The same reading, with the same refusals, without writing the frame: the message as
    // views into the line and this decoder, valid until the next call. For a caller that
    // changes the header and writes the frame itself (wire::append_message_view gives the
    // bytes decode() would have written).
    std::optional<std::string> decode_view(std::string_view line, wire::MessageView& view,
                                           Padding padding = Padding::absent);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// One message -> one JSON line. Not thread-safe; one per thread.
class JsonEncoder {
public:
    explicit JsonEncoder(TimeFormat time_format = TimeFormat::nanoseconds);
    ~JsonEncoder();
    JsonEncoder(const JsonEncoder&) = delete;
    JsonEncoder& operator=(const JsonEncoder&) = delete;

    // Appends the message as one line of JSON and its '\n'. Always valid JSON in UTF-8:
    // non-ASCII text is kept as it is (C1 controls escaped), invalid UTF-8 becomes U+FFFD, a body that is not
    // UTF-8 is written as {"base64":...}, NaN and infinities as null, and a json field that is not
    // valid JSON as a string.
    void encode(schema::Message::Reader message, std::string& out);

    // The same for a frame in the layout mh writers give (one segment, today's schema, no
    // pointer out of place), read straight from its words: cheaper than a FrameOpener and
    // Cap'n Proto's reader, and the same line. False, with nothing written, for any other
    // frame: open it and use encode(), which reads (or refuses) it as Cap'n Proto does.
    bool encode_frame(const wire::Frame& frame, std::string& out);
    // The same, appended to a byte buffer (an output's own, to be written as it is).
    bool encode_frame(const wire::Frame& frame, std::vector<std::byte>& out);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Frames from JSON lines on a file descriptor. Empty lines are skipped; a bad line is
// logged as "line N: REASON", counted in rejected() and skipped, or with Strict::yes ends
// the input (Next::broken, error() = "line N: REASON"). Lines longer than
// limits.max_frame_bytes are bad lines too.
class JsonLineSource final : public wire::FrameSource {
public:
    JsonLineSource(int fd, const StopFlag* stop, Log& log, Strict strict = Strict::no,
                   wire::FrameLimits limits = {});

    // The frame points into this source's buffer, valid until the next call.
    wire::Next next(wire::Wait wait, wire::Frame& frame) override;
    std::string error() const override { return m_error; }
    uint64_t rejected() const override { return m_rejected; }
    // The decoder writes each frame where it is asked to: no copy.
    bool makes_frames_in_place() const override { return true; }
    wire::Next next_into(wire::Wait wait, std::vector<std::byte>& out) override;

private:
    wire::LineReader m_reader;
    JsonDecoder m_decoder;
    Log& m_log;
    Strict m_strict;
    wire::FrameLimits m_limits;
    std::vector<std::byte> m_frame;
    std::string m_error;
    uint64_t m_rejected = 0;
};

// Frames -> JSON lines on a file descriptor.
class JsonSink final : public wire::FrameSink {
public:
    JsonSink(int fd, TimeFormat time_format = TimeFormat::nanoseconds,
             wire::FrameLimits limits = {});

    // A frame Cap'n Proto cannot read (garbled: check_frame() would have said so) is
    // skipped and counted, never half written.
    void write(const wire::Frame& frame) override;
    void flush() override { m_output.flush(); }
    // A frame in mh's own layout within the limit passes check_frame() by the very reading
    // that encodes it; any other is checked as check_frame() checks it, then written.
    std::optional<std::string> check_and_write(const wire::Frame& frame,
                                               const wire::FrameLimits& limits) override;

    uint64_t rejected() const { return m_rejected; }
    const std::string& last_error() const { return m_last_error; }

private:
    wire::FdOutput m_output;
    JsonEncoder m_encoder;
    wire::FrameOpener m_opener;
    size_t m_max_frame_bytes;
    std::string m_line;
    std::string m_last_error;
    uint64_t m_rejected = 0;
};

namespace json {

// Building blocks the text formats share (CSV and the human-readable text sink use them).

// What becomes of non-ASCII text in a string: kept as UTF-8 (the default, as jq writes it;
// C1 controls are still escaped), or \u escapes for pure ASCII output.
enum class NonAscii { escape, keep };

// `text` as a JSON string with its quotes: escaped, invalid UTF-8 replaced by U+FFFD.
void append_string(std::string& out, std::string_view text, NonAscii non_ascii = NonAscii::keep);

// The shortest text that reads back as the same double, always with a '.' or an exponent
// ("21.0", "1e+300"); NaN and infinities have no JSON form and are the caller's to handle.
void append_float(std::string& out, double value);
// The same text written at `out`, which has room for k_float_chars; returns its end.
constexpr size_t k_float_chars = 40;
char* write_float(char* out, double value);

// Standard base64 with padding.
void append_base64(std::string& out, std::span<const std::byte> bytes);

// Standard or URL-safe base64, padding optional; false on anything else.
bool decode_base64(std::string_view text, std::string& out);

// Integer nanoseconds or RFC 3339 text; nullopt if it is neither or is outside the
// int64 nanosecond range (years 1677 to 2262).
std::optional<int64_t> parse_time_text(std::string_view text);

// True for "0", "-12", "123456789012345678901234": JSON's grammar for integers.
bool is_integer_text(std::string_view text);

}  // namespace json
}  // namespace mh
