// JSON lines through the pump as mh-cat --from json runs them: frames decoded straight into
// the output's buffer give the very bytes, counters and refusals that frames handed out one by
// one and copied give. And the encoder's fast ways of writing numbers write what to_chars does.
#include "json/json_codec.h"
#include "relay/pump.h"

#include "support/support.h"

#include <capnp/serialize.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <charconv>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using mh::test::TempFile;
using namespace mh;

namespace {

// Good lines of every kind, with bad, empty, blank, "\r\n" and barrier lines among them.
std::string mixed_lines(int count) {
    std::string text;
    for (int i = 1; i <= count; ++i) {
        switch (i % 11) {
            case 3: text += "not json\n"; break;
            case 5: text += "\n"; break;
            case 6: text += "  \t \n"; break;
            case 7: text += fmt::format("{{\"$barrier\":{},\"time\":{}}}\n", i, i * 1000); break;
            case 8: text += fmt::format("{{\"source\":\"s{}\",\"x\":[1,2],\"e\":\"a\\u00e9\"}}\r\n", i); break;
            case 9: text += "{\"time\":\"yesterday\"}\n"; break;
            default:
                text += fmt::format(
                    "{{\"id\":\"0190a6b2-3c4d-7e8f-9a0b-{:012x}\",\"time\":{},\"source\":\"sensor-{:06}\","
                    "\"kind\":\"telemetry\",\"temperature\":{}.{},\"count\":{},\"ok\":true,\"m\":{{\"rpm\":{}}}}}\n",
                    i, 1795706442000000000 + i, i % 97, i % 40, i % 100, i, i * 3);
        }
    }
    return text + "{\"source\":\"last, without a newline\"}";
}

struct PumpRun {
    std::string out;
    uint64_t messages = 0, bytes = 0, dropped = 0, rejected = 0;
};

// Pumps `input` from a JsonLineSource to a file, alone (the in-place path) or teed to a
// second file (frame by frame).
PumpRun pump_lines(const std::string& input, bool in_place) {
    TempFile in(input), out, other;
    metrics::Registry registry;
    relay::FlowCounters counters(registry);
    Log log("test", LogLevel::error);
    JsonLineSource source(in.fd(), nullptr, log);
    wire::FdFrameWriter writer(out.fd()), tee(other.fd());
    std::vector<wire::FrameSink*> sinks{&writer};
    if (!in_place) sinks.push_back(&tee);
    relay::PumpOptions options;
    options.check = relay::Check::framing_only;
    relay::pump(source, sinks, counters, options, log);
    if (!in_place) {
        EXPECT_EQ(other.content(), out.content());
    }
    return {out.content(), counters.messages_out.value(), counters.bytes_out.value(),
            counters.dropped_malformed.value(), source.rejected()};
}

}  // namespace

TEST(JsonLines, DecodedInPlaceGiveTheBytesAndCountsOfFramesCopied) {
    std::string input = mixed_lines(3000);
    PumpRun copied = pump_lines(input, false);
    PumpRun in_place = pump_lines(input, true);
    EXPECT_GT(copied.messages, 1800u);
    EXPECT_EQ(in_place.out, copied.out);
    EXPECT_EQ(in_place.out.size(), copied.bytes);
    EXPECT_EQ(in_place.messages, copied.messages);
    EXPECT_EQ(in_place.bytes, copied.bytes);
    EXPECT_EQ(in_place.dropped, copied.dropped);
    EXPECT_EQ(in_place.rejected, copied.rejected);
    EXPECT_GT(in_place.rejected, 500u);
}

TEST(JsonLines, AMessageOverTheFrameLimitLeavesNothingInTheBuffer) {
    std::string line = "{";
    for (int i = 0; i < 20; ++i) line += (i ? ",\"" : "\"") + std::string(1, char('a' + i)) + "\":1";
    line += "}";
    TempFile in("{\"x\":1}\n" + line + "\n{\"x\":2}\n");
    Log log("test", LogLevel::error);
    JsonLineSource source(in.fd(), nullptr, log, Strict::no, wire::FrameLimits{256});
    std::vector<std::byte> out;
    ASSERT_EQ(source.next_into(wire::Wait::yes, out), wire::Next::frame);
    size_t first = out.size();
    ASSERT_EQ(source.next_into(wire::Wait::yes, out), wire::Next::frame);  // {"x":2}: the big one skipped
    EXPECT_EQ(out.size(), 2 * first);
    EXPECT_EQ(source.next_into(wire::Wait::yes, out), wire::Next::end);
    EXPECT_EQ(out.size(), 2 * first);
    EXPECT_EQ(source.rejected(), 1u);
}

// Times are written as std::to_chars writes them, around every width the encoder treats
// apart (fewer than 17 digits, 17 to 19, the largest), both through the frame's own words
// (encode_frame) and through Cap'n Proto's reader (encode), and read back the same.
TEST(JsonLines, TimesAreWrittenAsToCharsWritesThem) {
    std::vector<int64_t> times = {1, 9, 10, 99999999, 100000000, 9999999999999999, 10000000000000000,
                                  10000000000000001, 99999999999999999, 100000000000000000,
                                  999999999999999999, 1000000000000000000, 1767225600000000000,
                                  1767225600100000007, 1000000000099999999, 9223372036854775807,
                                  -1, -1767225600000000000, std::numeric_limits<int64_t>::min()};
    for (int64_t base = 10000000000000000; base <= 1000000000000000000; base *= 10)
        for (int64_t step : {1, 9, 10, 100000000, 99999999, 12345678, 87654321})
            times.push_back(base + step * 7);
    JsonEncoder encoder;
    JsonDecoder decoder;
    for (int64_t time : times) {
        char digits[24];
        std::string expected(digits, std::to_chars(digits, digits + sizeof(digits), time).ptr);
        std::string text = "{\"time\":" + expected + ",\"ingested\":" + expected + ",\"x\":1}";
        std::vector<std::byte> bytes;
        ASSERT_FALSE(decoder.decode(text, bytes)) << text;
        std::vector<capnp::word> words(bytes.size() / sizeof(capnp::word));
        std::memcpy(words.data(), bytes.data(), bytes.size());
        std::string line;
        ASSERT_TRUE(encoder.encode_frame(wire::Frame{words.data(), words.size()}, line)) << text;
        EXPECT_EQ(line, text + "\n");
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
        std::string via_reader;
        encoder.encode(reader.getRoot<schema::Message>(), via_reader);
        EXPECT_EQ(via_reader, text + "\n");
    }
}

// A decoder remembers the keys of the last lines (the key cache, and whether a line with
// those keys had duplicates): whatever the order of lines, each gives the frame a fresh
// decoder and the reference give it.
TEST(JsonLines, LinesWithTheKeysOfTheLastOnesGiveFreshFrames) {
    const std::vector<std::string> lines = {
        R"({"a":1,"b":2})", R"({"a":1,"b":2})", R"({"a":3,"b":4})", R"({"a":1,"a":2})",
        R"({"a":1,"a":2})", R"({"a":1,"a":2})", R"({"a":1,"b":2})", R"({"a":1,"b":2})",
        R"({"a":1,"b":2,"a":3})", R"({"a":1,"b":2})", R"({"a":{"b":1},"a.b":2})",
        R"({"a":{"b":1},"a.b":2})", R"({"a":{"b":1}})", R"({"a":{"b":1}})", R"({"a":1,"b":2})",
        R"({"a":1,"b":2})", R"({"a":"x\"y","b":2})", R"({"a":1,"b":2})", R"({"a":1,"b":2})",
        R"({"time":1,"a":1,"b":2})", R"({"time":1,"a":1,"b":2})", R"({"time":1,"time":2,"a":1})",
        R"({"$barrier":3,"time":1})", R"({"a":1,"b":2})", R"({"a":1,"b":2})", R"({"b":1,"a":2})",
        R"({"b":1,"a":2})", R"({"b":1,"a":2,"b":3})", R"({"a":1,"b":2})", R"({"a":1,"b":2})",
    };
    JsonDecoder kept, reference(DecodePath::reference);
    for (int round = 0; round < 2; ++round) {
        for (const auto& line : lines) {
            std::vector<std::byte> kept_frame, fresh_frame, reference_frame;
            auto kept_reason = kept.decode(line, kept_frame);
            auto fresh_reason = JsonDecoder().decode(line, fresh_frame);
            auto reference_reason = reference.decode(line, reference_frame);
            EXPECT_EQ(kept_reason, fresh_reason) << line;
            EXPECT_EQ(kept_reason, reference_reason) << line;
            EXPECT_EQ(kept_frame, fresh_frame) << line;
            EXPECT_EQ(kept_frame, reference_frame) << line;
        }
    }
}

// Texts of every length up to a few words, where the frame writer copies short ones its own
// way: the bytes of Cap'n Proto's builder (the reference path), names and values alike.
TEST(JsonLines, TextsOfEveryShortLengthGiveTheReferenceBytes) {
    JsonDecoder fast, reference(DecodePath::reference);
    std::string letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (size_t size = 0; size <= 40; ++size) {
        std::string text = letters.substr(0, size);
        std::string name = size ? letters.substr(letters.size() - size) : "n";
        std::string line = "{\"source\":\"" + text + "\",\"gateway\":\"" + text + "\",\"kind\":\"" + text +
                           "\",\"" + name + "\":\"" + text + "\",\"" + name + "x\":1}";
        std::vector<std::byte> fast_frame, reference_frame;
        ASSERT_FALSE(fast.decode(line, fast_frame)) << line;
        ASSERT_FALSE(reference.decode(line, reference_frame)) << line;
        EXPECT_EQ(fast_frame, reference_frame) << line;
    }
}
