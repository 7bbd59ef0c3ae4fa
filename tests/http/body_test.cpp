// POST bodies -> messages by Content-Type, and responses written to bytes.
#include "http/body.h"
#include "http/response.h"

#include "json/json_codec.h"
#include "support/support.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <string>

using namespace mh;
using namespace mh::http;

namespace {

// The frames back to back as JSON lines, through the same encoder mh-cat uses.
std::string as_json(const std::vector<std::byte>& frames) {
    auto words = test::to_words(frames);
    kj::ArrayPtr<const capnp::word> rest(words.data(), words.size());
    JsonEncoder encoder;
    std::string out;
    while (rest.size() > 0) {
        capnp::FlatArrayMessageReader reader(rest);
        encoder.encode(reader.getRoot<schema::Message>(), out);
        rest = kj::arrayPtr(reader.getEnd(), rest.end());
    }
    return out;
}

}  // namespace

TEST(Body, Formats) {
    EXPECT_EQ(body_format("application/x-ndjson"), BodyFormat::json_lines);
    EXPECT_EQ(body_format("application/jsonl; charset=utf-8"), BodyFormat::json_lines);
    EXPECT_EQ(body_format("Application/JSON ;charset=UTF-8"), BodyFormat::json);
    EXPECT_EQ(body_format("application/vnd.mh.frames"), BodyFormat::frames);
    EXPECT_EQ(body_format("text/plain"), std::nullopt);
    EXPECT_EQ(body_format(""), std::nullopt);
}

TEST(Body, JsonLinesArrayAndObjectGiveTheSameMessages) {
    BodyDecoder decoder;
    std::string lines = "{\"source\":\"s1\",\"kind\":\"telemetry\",\"temperature\":21.5}\r\n\n"
                        "{\"source\":\"s2\",\"motor\":{\"rpm\":1200}}\n";
    std::vector<std::byte> from_lines, from_array, from_object;
    auto result = decoder.decode("application/x-ndjson", lines, from_lines);
    EXPECT_EQ(result.status, 0) << result.first_error;
    EXPECT_EQ(result.accepted, 2u);
    std::string expected = "{\"source\":\"s1\",\"kind\":\"telemetry\",\"temperature\":21.5}\n"
                           "{\"source\":\"s2\",\"motor\":{\"rpm\":1200}}\n";
    EXPECT_EQ(as_json(from_lines), expected);

    std::string array = " [ {\"source\":\"s1\",\"kind\":\"telemetry\",\"temperature\":21.5} ,\n"
                        "{\"source\":\"s2\",\"motor\":{\"rpm\":1200}} ] \n";
    result = decoder.decode("application/json", array, from_array);
    EXPECT_EQ(result.status, 0) << result.first_error;
    EXPECT_EQ(result.accepted, 2u);
    EXPECT_EQ(from_array, from_lines);

    result = decoder.decode("application/json", "{\"source\":\"s1\",\"tags\":[1,\"a,]}\"]}", from_object);
    EXPECT_EQ(result.status, 0) << result.first_error;
    EXPECT_EQ(as_json(from_object), "{\"source\":\"s1\",\"tags\":[1,\"a,]}\"]}\n");

    std::vector<std::byte> none;
    result = decoder.decode("application/json", "[ ]", none);
    EXPECT_EQ(result.status, 0);
    EXPECT_EQ(result.accepted, 0u);
}

TEST(Body, InvalidItemsStrictAndNot) {
    BodyDecoder decoder;
    std::string lines = "{\"source\":\"ok\"}\n{\"time\":\"yesterday\"}\n[1]\n{\"source\":\"ok2\"}\n";
    std::vector<std::byte> frames(8, std::byte{1});  // what the caller had stays
    auto result = decoder.decode("application/x-ndjson", lines, frames);
    EXPECT_EQ(result.status, 400);
    EXPECT_EQ(result.first_error.rfind("line 2: time:", 0), 0u) << result.first_error;
    EXPECT_EQ(result.accepted, 0u);
    EXPECT_EQ(frames.size(), 8u);

    frames.clear();
    result = decoder.decode("application/x-ndjson", lines, frames, Strict::no);
    EXPECT_EQ(result.status, 0);
    EXPECT_EQ(result.accepted, 2u);
    EXPECT_EQ(result.rejected, 2u);
    EXPECT_EQ(as_json(frames), "{\"source\":\"ok\"}\n{\"source\":\"ok2\"}\n");

    frames.clear();
    result = decoder.decode("application/json", "[{\"a\":1}, 5]", frames);
    EXPECT_EQ(result.status, 400);
    EXPECT_EQ(result.first_error, "item 2: expected a JSON object");
}

TEST(Body, BrokenStructure) {
    BodyDecoder decoder;
    std::vector<std::byte> frames;
    EXPECT_EQ(decoder.decode("application/json", "[{\"a\":1}", frames).status, 400);
    EXPECT_EQ(decoder.decode("application/json", "[{\"a\":1},]", frames).status, 400);
    EXPECT_EQ(decoder.decode("application/json", "[{\"a\":1}] x", frames).status, 400);
    EXPECT_EQ(decoder.decode("application/json", "[{\"a\":\"]", frames).status, 400);
    EXPECT_EQ(decoder.decode("application/json", "[}]", frames).status, 400);
    EXPECT_EQ(decoder.decode("application/json", "", frames).status, 400);
    EXPECT_EQ(decoder.decode("application/json", "{\"a\":1} {\"b\":2}", frames).status, 400);
    EXPECT_EQ(decoder.decode("text/csv", "a,b", frames).status, 415);
    EXPECT_TRUE(frames.empty());
}

TEST(Body, ControlFramesAreRefused) {
    BodyDecoder decoder;
    std::vector<std::byte> frames;
    auto result = decoder.decode("application/x-ndjson", "{\"$barrier\":7,\"time\":1}\n", frames);
    EXPECT_EQ(result.status, 400);
    EXPECT_NE(result.first_error.find("control frames"), std::string::npos);
    EXPECT_TRUE(frames.empty());
}

TEST(Body, Frames) {
    JsonDecoder json;
    std::vector<std::byte> sent;
    ASSERT_FALSE(json.decode("{\"source\":\"s1\",\"t\":1}", sent));
    ASSERT_FALSE(json.decode("{\"source\":\"s2\",\"t\":2}", sent));
    std::string body(reinterpret_cast<const char*>(sent.data()), sent.size());

    BodyDecoder decoder;
    std::vector<std::byte> frames;
    auto result = decoder.decode("application/vnd.mh.frames", body, frames);
    EXPECT_EQ(result.status, 0) << result.first_error;
    EXPECT_EQ(result.accepted, 2u);
    EXPECT_EQ(frames, sent);

    frames.clear();
    EXPECT_EQ(decoder.decode("application/vnd.mh.frames", body.substr(0, body.size() - 8), frames).status, 400);
    std::string huge("\x00\x00\x00\x00\xff\xff\xff\x0f", 8);  // one segment of 2^28 words
    EXPECT_EQ(decoder.decode("application/vnd.mh.frames", huge, frames).status, 413);
    std::string garbled = body;
    garbled[8] = '\xff';  // the root pointer of the first frame
    garbled[9] = '\xff';
    result = decoder.decode("application/vnd.mh.frames", garbled, frames, Strict::no);
    EXPECT_EQ(result.status, 0);
    EXPECT_EQ(result.accepted, 1u);
    EXPECT_EQ(result.rejected, 1u);
    EXPECT_EQ(result.first_error.rfind("frame 1: ", 0), 0u) << result.first_error;
}

TEST(Body, TooManyMessages) {
    BodyLimits limits;
    limits.max_messages = 2;
    BodyDecoder decoder(limits);
    std::vector<std::byte> frames;
    EXPECT_EQ(decoder.decode("application/x-ndjson", "{}\n{}\n", frames).status, 0);
    frames.clear();
    auto result = decoder.decode("application/x-ndjson", "{}\n{}\n{}\n", frames);
    EXPECT_EQ(result.status, 413);
    EXPECT_TRUE(frames.empty());
}

TEST(Response, WritesStatusHeadersAndBody) {
    std::string out;
    Response response;
    response.status = 202;
    response.content_type = "application/json";
    response.body = "{\"accepted\":2}\n";
    response.headers.push_back({"X-Request-Id", "42"});
    write(out, response);
    EXPECT_EQ(out, "HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\nContent-Type: application/json\r\n"
                   "X-Request-Id: 42\r\n\r\n{\"accepted\":2}\n");

    out.clear();
    write(out, error_response(429, "over quota", std::chrono::seconds(3)));
    EXPECT_EQ(out, "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 23\r\nContent-Type: application/json\r\n"
                   "Retry-After: 3\r\n\r\n{\"error\":\"over quota\"}\n");

    out.clear();
    write(out, error_response(RequestError{413, "body \"larger\" than the limit"}));
    EXPECT_NE(out.find("HTTP/1.1 413 Content Too Large\r\n"), std::string::npos);
    EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
    EXPECT_NE(out.find("{\"error\":\"body \\\"larger\\\" than the limit\"}"), std::string::npos);

    out.clear();
    write_continue(out);
    EXPECT_EQ(out, "HTTP/1.1 100 Continue\r\n\r\n");
    EXPECT_EQ(reason_phrase(599), "Unknown");
}
