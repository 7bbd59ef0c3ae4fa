// Fuzzes the HTTP request parser and the body decoder with a byte stream from a client.
// The first byte picks how the stream is cut into reads; the same stream read whole must
// give the same requests and the same refusal (fragmentation never changes the meaning),
// limits must hold for everything returned, and each body goes through the body decoder
// as its Content-Type says.
#include "http/body.h"
#include "http/request.h"
#include "http/response.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

using namespace mh;
using namespace mh::http;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "http_request_fuzz: %s\n", what);
    std::abort();
}

// Everything the parser said about `input` read in pieces of `piece` bytes, as text.
std::string run(std::string_view input, size_t piece, const Limits& limits, BodyDecoder& decoder) {
    RequestParser parser(limits);
    Request request;
    std::string events;
    std::vector<std::byte> frames;
    for (size_t at = 0; at < input.size(); at += piece) {
        parser.feed(input.substr(at, piece));
        while (true) {
            ParseStatus status = parser.next(request);
            if (status == ParseStatus::need_more) break;
            if (status == ParseStatus::headers) continue;  // depends on the pieces, by design
            if (status == ParseStatus::error) {
                if (!parser.error()) fail("error without a reason");
                std::string out;
                write(out, error_response(*parser.error()));
                return events + "error " + std::to_string(parser.error()->status) + " " +
                       parser.error()->reason;
            }
            if (request.body.size() > limits.max_body_bytes) fail("body over the limit");
            if (request.headers.size() > limits.max_headers) fail("too many headers");
            events += std::string(request.method) + " " + std::string(request.target) + " " +
                      std::to_string(request.body.size()) + (request.keep_alive ? " keep\n" : " close\n");
            events += std::string(bearer_token(request).value_or("-")) + "\n";
            frames.clear();
            auto result = decoder.decode(request.header("Content-Type").value_or(""), request.body,
                                         frames, Strict::no);
            if (result.status == 0 && frames.size() % 8 != 0) fail("frames not whole words");
            if (result.status != 0 && !frames.empty()) fail("a refused body left frames");
            events += std::to_string(result.status) + " " + std::to_string(result.accepted) + "\n";
        }
    }
    return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static BodyDecoder decoder;
    Limits limits;
    limits.max_request_line_bytes = 256;
    limits.max_header_bytes = 1024;
    limits.max_headers = 16;
    limits.max_body_bytes = 4096;
    size_t piece = (data[0] % 32) + 1;
    std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    std::string whole = run(input, input.size() + 1, limits, decoder);
    std::string pieces = run(input, piece, limits, decoder);
    if (whole != pieces) {
        std::fprintf(stderr, "whole:\n%s\npieces of %zu:\n%s\n", whole.c_str(), piece, pieces.c_str());
        fail("fragmentation changed the result");
    }
    return 0;
}
