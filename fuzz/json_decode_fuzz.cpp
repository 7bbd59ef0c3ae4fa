// Fuzzes the JSON decoder with one line of anything. Its fast path must agree with the
// reference path byte for byte and refusal for refusal. What it accepts must encode to a
// line it accepts again, and a second trip must give the same text (the mapping is stable).
#include "json/json_codec.h"

#include <capnp/serialize.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace {

using namespace mh;

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "json_decode_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

std::string encode(const std::vector<std::byte>& frame, JsonEncoder& encoder) {
    std::vector<capnp::word> words(frame.size() / sizeof(capnp::word));
    std::memcpy(words.data(), frame.data(), frame.size());
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    std::string line;
    encoder.encode(reader.getRoot<schema::Message>(), line);
    if (line.empty() || line.back() != '\n' || line.find('\n') != line.size() - 1)
        fail("not one line", line);
    line.pop_back();
    return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static JsonDecoder decoder;
    static JsonDecoder reference(DecodePath::reference);
    static JsonEncoder encoder(TimeFormat::nanoseconds);
    static JsonEncoder rfc3339_encoder(TimeFormat::rfc3339);

    // Exactly the padding the decoder may read in place, so that AddressSanitizer catches
    // any read beyond it.
    std::unique_ptr<char[]> padded(new char[size + wire::k_read_padding_bytes]);
    std::memcpy(padded.get(), data, size);
    std::memset(padded.get() + size, '}', wire::k_read_padding_bytes);
    std::string_view input(padded.get(), size);

    std::vector<std::byte> frame, reference_frame;
    auto reason = decoder.decode(input, frame, Padding::present);
    // The fast path must give exactly what simdjson and Cap'n Proto's builder give.
    auto reference_reason = reference.decode(input, reference_frame, Padding::present);
    if (reason != reference_reason)
        fail("the fast path and the reference disagree on", input);
    if (frame != reference_frame) fail("the fast path wrote other bytes for", input);
    // The views (what mh-endpoint stamps from) must write back the same bytes, or refuse alike.
    static JsonDecoder viewer;
    wire::MessageView view;
    auto view_reason = viewer.decode_view(input, view, Padding::present);
    if (view_reason != reason) fail("decode_view and decode disagree on", input);
    if (!view_reason) {
        std::vector<std::byte> written;
        wire::append_message_view(view, written);
        if (written != frame || wire::message_view_bytes(view) != frame.size())
            fail("decode_view's views write other bytes for", input);
    }
    if (reason) {
        if (!frame.empty()) fail("a refusal changed the output", input);
        return 0;
    }

    std::string once = encode(frame, encoder);
    std::vector<std::byte> again;
    if (auto reason = decoder.decode(once, again)) fail(reason->c_str(), once);
    std::string twice = encode(again, encoder);
    if (once != twice) fail("second trip differs", once + "\n" + twice);

    std::string rfc3339 = encode(frame, rfc3339_encoder);
    again.clear();
    if (auto reason = decoder.decode(rfc3339, again)) fail(reason->c_str(), rfc3339);
    if (encode(again, encoder) != once) fail("RFC 3339 trip differs", rfc3339);
    return 0;
}
