// A POST body -> messages, by its Content-Type, the way mh-cat maps JSON (lib/json's
// JsonDecoder, so HTTP, MQTT payloads and mh-cat agree on every key):
//
//   application/x-ndjson, application/jsonl, application/json-lines, application/x-jsonlines
//       JSON lines: one object per line; empty lines skipped
//   application/json      one JSON object, or a JSON array of objects
//   application/vnd.mh.frames
//       Cap'n Proto frames back to back, as on an mh pipe; each one checked with
//       wire::check_frame() before it is taken
//
// Parameters (charset=utf-8) are ignored; types are compared case-insensitively. Messages
// from outside may not be control frames: a "$barrier" object or a barrier frame is an
// invalid item. The result is frames in stream framing, ready for a wire::FrameSink.
#pragma once

#include "json/json_codec.h"
#include "wire/frame.h"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::http {

enum class BodyFormat { json_lines, json, frames };

// The format of a Content-Type header value, or nullopt when it is none of them (415).
std::optional<BodyFormat> body_format(std::string_view content_type);

struct BodyLimits {
    size_t max_messages = 100'000;  // per body; more is a refusal of the whole body (413)
    wire::FrameLimits frame_limits;  // per message, for JSON and frames alike
};

struct BodyResult {
    // 0 when the body was read (see accepted/rejected); else the status that refuses the
    // whole body: 415 unknown Content-Type, 400 broken structure (a JSON array that does not
    // close, a truncated frame) or an invalid item with Strict::yes, 413 too many messages.
    int status = 0;
    size_t accepted = 0;  // messages appended to the output
    size_t rejected = 0;  // invalid items skipped (Strict::no)
    // Why the first invalid item or the body was refused: "line 3: time: expected ...",
    // "item 2: expected a JSON object", "frame 5: ...".
    std::string first_error;
};

// Reuses its JSON decoder and scratch buffers across bodies. Not thread-safe; one per thread.
class BodyDecoder {
public:
    explicit BodyDecoder(BodyLimits limits = {});

    // Appends one frame per valid message of `body` to `frames`. With Strict::yes, the first
    // invalid item refuses the whole body (400) and `frames` is left as it was, so that a
    // 202 means all of it was taken; with Strict::no, invalid items are skipped and counted.
    // When status != 0, `frames` is left as it was.
    BodyResult decode(BodyFormat format, std::string_view body, std::vector<std::byte>& frames,
                      Strict strict = Strict::yes);

    // body_format() of the Content-Type, then decode(); 415 when the type is unknown.
    BodyResult decode(std::string_view content_type, std::string_view body,
                      std::vector<std::byte>& frames, Strict strict = Strict::yes);

private:
    // Decodes one JSON text as a message; the reason when it is not one.
    std::optional<std::string> decode_json(std::string_view text, std::vector<std::byte>& frames);
    // Whether the frame at the end of `frames`, starting at `start`, is a control frame.
    bool is_control(const std::vector<std::byte>& frames, size_t start);

    BodyLimits m_limits;
    JsonDecoder m_json;
    // Room for `count` aligned words (capnp::word cannot live in a growing std::vector).
    capnp::word* scratch_words(size_t count);

    std::unique_ptr<capnp::word[]> m_words;  // aligned copy of one frame for checking
    size_t m_words_capacity = 0;
};

}  // namespace mh::http
