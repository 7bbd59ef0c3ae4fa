#include "http/body.h"

#include "http/request.h"

#include <capnp/serialize.h>
#include <fmt/format.h>
#include <kj/exception.h>

#include <cstring>

namespace mh::http {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim_space(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

// Where the array element starting at `at` ends: the ',' or ']' after it at depth 0, with
// strings (and their escapes) skipped; npos when the body ends first or a '}' is unbalanced.
size_t element_end(std::string_view text, size_t at) {
    size_t depth = 0;
    for (; at < text.size(); ++at) {
        char c = text[at];
        if (c == '"') {
            for (++at; at < text.size() && text[at] != '"'; ++at)
                if (text[at] == '\\') ++at;
            if (at >= text.size()) return std::string_view::npos;
        } else if (c == '{' || c == '[') {
            ++depth;
        } else if (c == '}' || c == ']') {
            if (depth == 0) return c == ']' ? at : std::string_view::npos;
            --depth;
        } else if (c == ',' && depth == 0) {
            return at;
        }
    }
    return std::string_view::npos;
}

}  // namespace

std::optional<BodyFormat> body_format(std::string_view content_type) {
    std::string_view type = trim_space(content_type.substr(0, content_type.find(';')));
    for (std::string_view lines : {"application/x-ndjson", "application/jsonl", "application/json-lines",
                                   "application/x-jsonlines"})
        if (iequals(type, lines)) return BodyFormat::json_lines;
    if (iequals(type, "application/json")) return BodyFormat::json;
    if (iequals(type, "application/vnd.mh.frames")) return BodyFormat::frames;
    return std::nullopt;
}

BodyDecoder::BodyDecoder(BodyLimits limits) : m_limits(limits) {}

capnp::word* BodyDecoder::scratch_words(size_t count) {
    if (count > m_words_capacity) {
        m_words = std::make_unique<capnp::word[]>(count);
        m_words_capacity = count;
    }
    return m_words.get();
}

bool BodyDecoder::is_control(const std::vector<std::byte>& frames, size_t start) {
    size_t bytes = frames.size() - start;
    const std::byte* data = frames.data() + start;
    const capnp::word* words = reinterpret_cast<const capnp::word*>(data);
    if (reinterpret_cast<uintptr_t>(data) % alignof(capnp::word) != 0) {
        capnp::word* copy = scratch_words(bytes / sizeof(capnp::word));
        std::memcpy(copy, data, bytes);
        words = copy;
    }
    try {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, bytes / sizeof(capnp::word)),
                                             wire::reader_options(m_limits.frame_limits));
        return reader.getRoot<schema::Message>().getControl().which() !=
               schema::Message::Control::NONE;
    } catch (const kj::Exception&) {
        return true;  // not reached for our own encoder's output; refuse rather than pass on
    }
}

std::optional<std::string> BodyDecoder::decode_json(std::string_view text,
                                                    std::vector<std::byte>& frames) {
    size_t start = frames.size();
    if (auto reason = m_json.decode(text, frames)) return reason;
    if (frames.size() - start > m_limits.frame_limits.max_frame_bytes) {
        frames.resize(start);
        return std::string("message larger than the limit");
    }
    if (is_control(frames, start)) {
        frames.resize(start);
        return std::string("control frames ($barrier) are not accepted from clients");
    }
    return std::nullopt;
}

BodyResult BodyDecoder::decode(std::string_view content_type, std::string_view body,
                               std::vector<std::byte>& frames, Strict strict) {
    auto format = body_format(content_type);
    if (!format) {
        BodyResult result;
        result.status = 415;
        result.first_error = fmt::format("unsupported Content-Type \"{}\" (application/json, "
                                         "application/x-ndjson or application/vnd.mh.frames)",
                                         content_type.substr(0, 100));
        return result;
    }
    return decode(*format, body, frames, strict);
}

BodyResult BodyDecoder::decode(BodyFormat format, std::string_view body,
                               std::vector<std::byte>& frames, Strict strict) {
    BodyResult result;
    size_t original = frames.size();
    // An invalid item: counted, remembered, and with Strict::yes the end of it all.
    auto bad_item = [&](std::string_view label, size_t number, std::string_view reason) {
        if (result.first_error.empty()) result.first_error = fmt::format("{} {}: {}", label, number, reason);
        ++result.rejected;
        if (strict == Strict::yes) result.status = 400;
    };
    auto refuse = [&](int status, std::string reason) {
        result.status = status;
        result.first_error = std::move(reason);
    };
    auto too_many = [&] {
        if (result.accepted + result.rejected < m_limits.max_messages) return false;
        refuse(413, fmt::format("more than {} messages in one body", m_limits.max_messages));
        return true;
    };

    switch (format) {
        case BodyFormat::json_lines: {
            size_t number = 0;
            for (size_t at = 0; at < body.size() && result.status == 0;) {
                size_t newline = body.find('\n', at);
                if (newline == std::string_view::npos) newline = body.size();
                std::string_view line = trim_space(body.substr(at, newline - at));
                at = newline + 1;
                ++number;
                if (line.empty()) continue;
                if (too_many()) break;
                if (auto reason = decode_json(line, frames))
                    bad_item("line", number, *reason);
                else
                    ++result.accepted;
            }
            break;
        }
        case BodyFormat::json: {
            std::string_view text = trim_space(body);
            if (text.empty()) {
                refuse(400, "empty body (expected a JSON object or array)");
                break;
            }
            if (text.front() != '[') {
                if (auto reason = decode_json(text, frames))
                    bad_item("item", 1, *reason);
                else
                    ++result.accepted;
                break;
            }
            size_t at = 1;
            while (at < text.size() && is_space(text[at])) ++at;
            if (at < text.size() && text[at] == ']') {
                if (at + 1 != text.size()) refuse(400, "bytes after the JSON array");
                break;  // an empty array: nothing to take
            }
            for (size_t number = 1; result.status == 0; ++number) {
                size_t end = element_end(text, at);
                if (end == std::string_view::npos) {
                    refuse(400, fmt::format("item {}: the JSON array is malformed or does not close", number));
                    break;
                }
                std::string_view element = trim_space(text.substr(at, end - at));
                if (element.empty()) {
                    refuse(400, fmt::format("item {}: empty element in the JSON array", number));
                    break;
                }
                if (too_many()) break;
                if (auto reason = decode_json(element, frames))
                    bad_item("item", number, *reason);
                else
                    ++result.accepted;
                at = end + 1;
                if (text[end] == ']') {
                    if (end + 1 != text.size()) refuse(400, "bytes after the JSON array");
                    break;
                }
            }
            break;
        }
        case BodyFormat::frames: {
            auto bytes = std::as_bytes(std::span(body.data(), body.size()));
            for (size_t at = 0, number = 1; at < bytes.size() && result.status == 0; ++number) {
                wire::FrameScan scan = wire::scan_frame(bytes.subspan(at), m_limits.frame_limits);
                if (scan.status == wire::ScanStatus::incomplete) {
                    refuse(400, fmt::format("frame {}: truncated", number));
                    break;
                }
                if (scan.status == wire::ScanStatus::too_large) {
                    refuse(413, fmt::format("frame {}: larger than the limit", number));
                    break;
                }
                if (scan.status == wire::ScanStatus::bad_segments) {
                    refuse(400, fmt::format("frame {}: bad segment table", number));
                    break;
                }
                if (too_many()) break;
                capnp::word* copy = scratch_words(scan.frame_bytes / sizeof(capnp::word));
                std::memcpy(copy, bytes.data() + at, scan.frame_bytes);
                wire::Frame frame{copy, scan.frame_bytes / sizeof(capnp::word)};
                at += scan.frame_bytes;
                if (auto reason = wire::check_frame(frame, m_limits.frame_limits)) {
                    bad_item("frame", number, *reason);
                    continue;
                }
                size_t start = frames.size();
                frames.insert(frames.end(), frame.bytes().begin(), frame.bytes().end());
                if (is_control(frames, start)) {
                    frames.resize(start);
                    bad_item("frame", number, "control frames are not accepted from clients");
                    continue;
                }
                ++result.accepted;
            }
            break;
        }
    }
    if (result.status != 0) {
        frames.resize(original);
        result.accepted = 0;
    }
    return result;
}

}  // namespace mh::http
