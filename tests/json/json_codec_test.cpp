// JSON lines <-> frames: every mapping rule, the byte-for-byte round trip of the flat shape,
// nested objects, what is kept as raw JSON, barriers, and every reason a line is refused.
#include "json/json_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include "support/support.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <vector>

using mh::test::TempFile;
namespace {

using namespace mh;
using FieldValue = schema::Field::Value;

// ---- helpers ------------------------------------------------------------------------------

// A decoded line, read back as a message (frames are copied to word-aligned memory first).
class Decoded {
public:
    explicit Decoded(std::string_view line) {
        JsonDecoder decoder;
        std::vector<std::byte> frame;
        if (auto reason = decoder.decode(line, frame)) {
            ADD_FAILURE() << "refused: " << *reason << "\n  line: " << line;
            return;
        }
        m_words = std::vector<capnp::word>(frame.size() / sizeof(capnp::word));
        std::memcpy(m_words.data(), frame.data(), frame.size());
        m_reader.emplace(kj::arrayPtr(m_words.data(), m_words.size()));
        m_message = m_reader->getRoot<schema::Message>();
    }
    schema::Message::Reader message() const { return m_message; }
    const schema::Message::Reader* operator->() const { return &m_message; }

    // The field called `name`, or a failure.
    FieldValue::Reader field(std::string_view name) {
        for (auto field : message().getFields())
            if (std::string_view(field.getName().cStr()) == name) return field.getValue();
        ADD_FAILURE() << "no field " << name;
        return message().getFields()[0].getValue();
    }
    std::vector<std::string> field_names() {
        std::vector<std::string> names;
        for (auto field : message().getFields()) names.emplace_back(field.getName().cStr());
        return names;
    }

private:
    std::vector<capnp::word> m_words;
    std::optional<capnp::FlatArrayMessageReader> m_reader;
    schema::Message::Reader m_message;
};

// Why the decoder refuses `line` ("" when it accepts it).
std::string refusal(std::string_view line) {
    JsonDecoder decoder;
    std::vector<std::byte> frame;
    auto reason = decoder.decode(line, frame);
    EXPECT_EQ(frame.empty(), reason.has_value()) << "a refusal must leave the output as it was";
    return reason.value_or("");
}

std::string encode(schema::Message::Reader message,
                   TimeFormat time_format = TimeFormat::nanoseconds) {
    JsonEncoder encoder(time_format);
    std::string line;
    encoder.encode(message, line);
    EXPECT_TRUE(!line.empty() && line.back() == '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per message";
    line.pop_back();
    return line;
}

// JSON -> frame -> JSON.
std::string round_trip(std::string_view line, TimeFormat time_format = TimeFormat::nanoseconds) {
    Decoded decoded(line);
    return encode(decoded.message(), time_format);
}

// ---- JSON -> message: the header --------------------------------------------------------

TEST(JsonDecoder, TopLevelKeysFillTheHeader) {
    Decoded m(R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b","time":1764170442123000000,)"
              R"("ingested":1764170442200000000,"source":"sensor-000123","gateway":"gw-01",)"
              R"("kind":"telemetry","body":"hello"})");
    EXPECT_EQ(m->getId().size(), 16u);
    EXPECT_EQ(m->getId()[0], 0x01);
    EXPECT_EQ(m->getId()[15], 0x6b);
    EXPECT_EQ(m->getTime(), 1764170442123000000);
    EXPECT_EQ(m->getIngested(), 1764170442200000000);
    EXPECT_STREQ(m->getSource().cStr(), "sensor-000123");
    EXPECT_STREQ(m->getGateway().cStr(), "gw-01");
    EXPECT_STREQ(m->getKind().cStr(), "telemetry");
    EXPECT_EQ(
        std::string_view(reinterpret_cast<const char*>(m->getBody().begin()), m->getBody().size()),
        "hello");
    EXPECT_EQ(m->getFields().size(), 0u);
    EXPECT_TRUE(m->getControl().isNone());
}

TEST(JsonDecoder, IdsMayBe32PlainHexDigitsInEitherCase) {
    Decoded dashed(R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"})");
    Decoded plain(R"({"id":"0190A6B23C4D7E8F9A0B1C2D3E4F5A6B"})");
    EXPECT_EQ(dashed->getId(), plain->getId());
}

TEST(JsonDecoder, TimesAreIntegerNanosecondsOrRfc3339Text) {
    EXPECT_EQ(Decoded(R"({"time":-5})")->getTime(), -5);
    EXPECT_EQ(Decoded(R"({"time":"2026-11-26T15:20:42.5+01:00"})")->getTime(), 1795702842500000000);
    EXPECT_EQ(Decoded(R"({"time":"1970-01-01T00:00:00.000000001Z"})")->getTime(), 1);
    EXPECT_EQ(Decoded(R"({"ingested":"2026-11-26T14:20:42.5Z"})")->getIngested(),
              1795702842500000000);
    // The whole int64 range, to the nanosecond.
    EXPECT_EQ(Decoded(R"({"time":"2262-04-11T23:47:16.854775807Z"})")->getTime(),
              std::numeric_limits<int64_t>::max());
    EXPECT_EQ(Decoded(R"({"time":"1677-09-21T00:12:43.145224192Z"})")->getTime(),
              std::numeric_limits<int64_t>::min());
}

TEST(JsonDecoder, NullLeavesAHeaderPartUnset) {
    Decoded m(R"({"id":null,"time":null,"source":null,"kind":null,"body":null,"x":1})");
    EXPECT_FALSE(m->hasId());
    EXPECT_EQ(m->getTime(), 0);
    EXPECT_FALSE(m->hasSource());
    EXPECT_FALSE(m->hasBody());
}

TEST(JsonDecoder, ABodyIsAStringOrBase64Bytes) {
    Decoded text(R"({"body":"caf\u00e9"})");
    EXPECT_EQ(
        std::string(reinterpret_cast<const char*>(text->getBody().begin()), text->getBody().size()),
        "caf\xC3\xA9");
    Decoded bytes(R"({"body":{"base64":"AP8Q"}})");
    ASSERT_EQ(bytes->getBody().size(), 3u);
    EXPECT_EQ(bytes->getBody()[0], 0x00);
    EXPECT_EQ(bytes->getBody()[1], 0xFF);
    EXPECT_EQ(bytes->getBody()[2], 0x10);
    // URL-safe alphabet and missing padding are read too.
    EXPECT_EQ(Decoded(R"({"body":{"base64":"_-8"}})")->getBody().size(), 2u);
}

// ---- JSON -> message: the fields --------------------------------------------------------

TEST(JsonDecoder, OtherKeysAreTypedFields) {
    Decoded m(R"({"count":42,"neg":-7,"temperature":21.5,"big_float":1e3,"whole":21.0,)"
              R"("status":"ok","open":true,"closed":false})");
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"count", "neg", "temperature", "big_float",
                                                         "whole", "status", "open", "closed"}));
    EXPECT_EQ(m.field("count").getInt(), 42);
    EXPECT_EQ(m.field("neg").getInt(), -7);
    EXPECT_EQ(m.field("temperature").getFloat(), 21.5);
    // A fraction or an exponent makes a float, even when the value is whole.
    EXPECT_EQ(m.field("big_float").which(), FieldValue::FLOAT);
    EXPECT_EQ(m.field("whole").which(), FieldValue::FLOAT);
    EXPECT_STREQ(m.field("status").getText().cStr(), "ok");
    EXPECT_TRUE(m.field("open").getBool());
    EXPECT_FALSE(m.field("closed").getBool());
}

TEST(JsonDecoder, AnEmptyStringIsAnEmptyTextField) {
    Decoded m(R"({"note":""})");
    EXPECT_EQ(m.field("note").which(), FieldValue::TEXT);
    EXPECT_EQ(m.field("note").getText().size(), 0u);
}

TEST(JsonDecoder, NestedObjectsFlattenToDottedNames) {
    Decoded m(R"({"motor":{"rpm":1500,"temp":{"winding":71.5,"case":40}},"ok":true})");
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"motor.rpm", "motor.temp.winding",
                                                         "motor.temp.case", "ok"}));
    EXPECT_EQ(m.field("motor.rpm").getInt(), 1500);
    EXPECT_EQ(m.field("motor.temp.winding").getFloat(), 71.5);
}

TEST(JsonDecoder, HeaderNamesInsideNestedObjectsAreFields) {
    Decoded m(R"({"meta":{"time":5,"source":"x"}})");
    EXPECT_EQ(m->getTime(), 0);
    EXPECT_EQ(m.field("meta.time").getInt(), 5);
    EXPECT_STREQ(m.field("meta.source").getText().cStr(), "x");
}

TEST(JsonDecoder, ArraysNullAndEmptyObjectsKeepTheirJsonText) {
    Decoded m(R"({"samples":[1, 2.5, "x", [true], {"k": null}],"nothing":null,"empty":{}})");
    EXPECT_EQ(m.field("samples").which(), FieldValue::JSON);
    EXPECT_STREQ(m.field("samples").getJson().cStr(), R"([1, 2.5, "x", [true], {"k": null}])");
    EXPECT_STREQ(m.field("nothing").getJson().cStr(), "null");
    EXPECT_STREQ(m.field("empty").getJson().cStr(), "{}");
}

TEST(JsonDecoder, IntegersBeyondInt64KeepTheirDigits) {
    Decoded m(
        R"({"max":9223372036854775807,"over":9223372036854775808,"huge":123456789012345678901234567890,)"
        R"("min":-9223372036854775808,"under":-9223372036854775809})");
    EXPECT_EQ(m.field("max").getInt(), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(m.field("min").getInt(), std::numeric_limits<int64_t>::min());
    EXPECT_STREQ(m.field("over").getJson().cStr(), "9223372036854775808");
    EXPECT_STREQ(m.field("huge").getJson().cStr(), "123456789012345678901234567890");
    EXPECT_STREQ(m.field("under").getJson().cStr(), "-9223372036854775809");
}

TEST(JsonDecoder, ADuplicateKeyTakesTheLastValueInThePlaceOfTheFirst) {
    Decoded m(R"({"a":1,"b":2,"a":"three","source":"x","source":"y"})");
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"a", "b"}));
    EXPECT_STREQ(m.field("a").getText().cStr(), "three");
    EXPECT_STREQ(m->getSource().cStr(), "y");
    // The same with many fields (sorted rather than compared pairwise), and via nesting.
    std::string line = "{";
    for (int i = 0; i < 40; ++i)
        line += "\"f" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    line += R"("f7":"late","g":{"h":1},"g.h":2})";
    Decoded many(line);
    EXPECT_EQ(many->getFields().size(), 41u);
    EXPECT_EQ(many.field_names()[7], "f7");
    EXPECT_STREQ(many.field("f7").getText().cStr(), "late");
    EXPECT_EQ(many.field("g.h").getInt(), 2);
}

TEST(JsonDecoder, AcceptsWhitespaceAndEscapes) {
    Decoded m(" { \"a b\" : \"tab\\there\" , \"\\u00e9\" : 1 } ");
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"a b", "\xC3\xA9"}));
    EXPECT_STREQ(m.field("a b").getText().cStr(), "tab\there");
}

TEST(JsonDecoder, BarriersAreControlFrames) {
    Decoded barrier(R"({"$barrier":12,"time":1795706444000000000})");
    ASSERT_TRUE(barrier->getControl().isBarrier());
    EXPECT_EQ(barrier->getControl().getBarrier().getNumber(), 12u);
    EXPECT_EQ(barrier->getControl().getBarrier().getTime(), 1795706444000000000);
    Decoded either_order(R"({"time":"2026-11-26T15:20:44Z","$barrier":13})");
    EXPECT_EQ(either_order->getControl().getBarrier().getNumber(), 13u);
}

TEST(JsonDecoder, AppendsOneFrameAfterWhatTheOutputHolds) {
    JsonDecoder decoder;
    std::vector<std::byte> frames;
    ASSERT_FALSE(decoder.decode(R"({"a":1})", frames));
    size_t first = frames.size();
    ASSERT_FALSE(decoder.decode(R"({"a":2})", frames));
    EXPECT_EQ(frames.size(), 2 * first);
    auto reason = decoder.decode("nope", frames);
    EXPECT_TRUE(reason);
    EXPECT_EQ(frames.size(), 2 * first);
}

TEST(JsonDecoder, ReadsInPlaceWhenTheCallerHasPadding) {
    // LineReader's lines have the padding; a plain string gets it by over-allocating.
    std::string line = R"({"a":1})";
    size_t size = line.size();
    line.resize(size + wire::k_read_padding_bytes, ' ');
    JsonDecoder decoder;
    std::vector<std::byte> frame;
    EXPECT_FALSE(decoder.decode(std::string_view(line.data(), size), frame, Padding::present));
    EXPECT_FALSE(frame.empty());
}

// Lines the decoder's fast path hands to its on-demand path, and lines either could read:
// one decoder, line after line, gives what each line gives on its own.
TEST(JsonDecoder, ReusedDecoderGivesEveryLineItsOwnMessage) {
    const char* lines[] = {
        R"({"a":-0,"b":-0.0,"c":0,"d":0.0})",
        R"({"a":[1,{"b":2}],"c":{"d":1},"e":18446744073709551615})",
        R"({"m":{"x":1},"m":{"y":2},"a":1,"a":"two"})",
        R"({"$barrier":0,"time":5})",
        R"({"$barrier":18446744073709551615})",
        R"({"time":-0,"ingested":"2026-11-26T15:20:44Z","source":null,"kind":"k"})",
        R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b","body":{"base64":"aGk="},"x":null})",
        R"({"q\u0041":"\u00e9","":{},"n":{"o":{}}})",
    };
    JsonDecoder reused;
    for (const char* line : lines) {
        std::vector<std::byte> alone, again;
        JsonDecoder fresh;
        ASSERT_FALSE(fresh.decode(line, alone)) << line;
        ASSERT_FALSE(reused.decode(line, again)) << line;
        EXPECT_EQ(alone, again) << line;
    }
    EXPECT_EQ(round_trip(R"({"a":-0,"b":-0.0,"c":0.0})"), R"({"a":0,"b":-0.0,"c":0.0})");
    EXPECT_EQ(round_trip(R"({"a":[1,{"b":2}],"e":18446744073709551615})"),
              R"({"a":[1,{"b":2}],"e":18446744073709551615})");
    EXPECT_EQ(round_trip(R"({"$barrier":0,"time":5})"), R"({"$barrier":0,"time":5})");
    EXPECT_EQ(refusal(R"({"$barrier":-0,"time":5})"),
              "$barrier: expected a checkpoint number (a non-negative integer)");
    // More than 19 digits read the same whichever path reads them (an array sends a line
    // to the on-demand path).
    EXPECT_EQ(round_trip(R"({"x":0.5555555555555555555555})"), R"({"x":0.5555555555555556})");
    EXPECT_EQ(round_trip(R"({"x":0.5555555555555555555555,"a":[1]})"),
              R"({"x":0.5555555555555556,"a":[1]})");
    EXPECT_EQ(refusal(R"({"a":1,"id":"nope"})"), "id: not a UUID");
    EXPECT_EQ(refusal(R"({"body":{"base64":"aGk=","x":1}})"),
              "body: expected a string or {\"base64\": \"...\"}");
}

// The fast path (its own scanner, frames written directly) against the reference (simdjson
// and Cap'n Proto's builder): the same frame bytes, or the same refusal, line for line.
TEST(JsonDecoder, FastPathGivesTheReferenceBytesAndRefusals) {
    std::vector<std::string> lines = {
        R"({"id":"019b76da-a800-7000-9684-3b6e10e76dfa","time":1767225600000000000,"ingested":1767225600000000000,"source":"sensor-000001","gateway":"gw-01","kind":"telemetry","temperature":17.65,"humidity":60.9,"pressure":1012.72,"battery":91.8})",
        R"({})", R"( { } )", "\t{\"a\" :\r\n1 }\t", R"({"":""})", R"({"a":""})",
        R"({"a":true,"b":false,"c":null,"d":{},"e":{"f":{"g":1}},"e":{"h":2}})",
        R"({"a":0,"b":-1,"c":9223372036854775807,"d":-9223372036854775807})",
        R"({"a":-9223372036854775808,"b":9223372036854775808,"c":12345678901234567890123})",
        R"({"a":-0,"b":-0.0,"c":0.0,"d":0e5,"e":-0e-5,"f":1E5,"g":1e+5,"h":2.5e-3})",
        R"({"a":0.1,"b":1.7976931348623157e308,"c":5e-324,"d":1e-400,"e":1e400,"f":2.2250738585072014e-308})",
        R"({"a":0.5555555555555555555555,"b":123456789012345.6,"c":1234567890123456.7})",
        R"({"a":9007199254740993.0,"b":1e22,"c":1e23,"d":123e-22,"e":4.35,"f":0.000001})",
        R"({"a":01})", R"({"a":1.})", R"({"a":.5})", R"({"a":+1})", R"({"a":1e})", R"({"a":-})",
        R"({"a":1.5.3})", R"({"a":12a})", R"({"a":tru})", R"({"a":truex})", R"({"a":nul})",
        R"({"a":1,})", R"({"a":1} x)", R"({"a":1}})", R"({"a" 1})", R"({a:1})", R"({"a":1)",
        R"({"a":"x)", R"({"a)", "{", "", "[1]", "42", R"("s")", "null",
        "{\"a\":\"tab\tinside\"}", "{\"a\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}",
        "{\"\xC3\xA9\":1}", "{\"a\":\"\xFF\"}", "{\"a\":\"\xC3\"}", "{\"a\":\"\xED\xA0\x80\"}",
        "{\"a\":1}\xC3\xA9", "{\"a\":\"x\\\"y\"}", R"({"a\u0041":1})",
        R"({"id":null,"time":null,"ingested":null,"source":null,"gateway":null,"kind":null,"body":null})",
        R"({"id":"0190A6B23C4D7E8F9A0B1C2D3E4F5A6B","time":"2026-11-26T15:20:44Z","ingested":-1})",
        R"({"id":"nope"})", R"({"id":1})", R"({"time":1.5})", R"({"time":"x"})", R"({"time":true})",
        R"({"time":-0})", R"({"time":9223372036854775808})", R"({"source":1})", R"({"kind":{}})",
        R"({"body":"text"})", R"({"body":{"base64":"aGk="}})", R"({"body":[1]})",
        R"({"$barrier":12,"time":1795706444000000000})", R"({"time":5,"$barrier":13})",
        R"({"$barrier":0})", R"({"$barrier":-1})", R"({"$barrier":-0})", R"({"$barrier":1.0})",
        R"({"$barrier":18446744073709551615})", R"({"$barrier":1,"a":1})",
        R"({"$barrier":1,"source":null})", R"({"a":[1,2],"b":{"c":[]}})",
        R"({"time":1,"time":2,"source":"a","source":"b","x":1,"x":"y"})",
        R"({"source":"s","gateway":"g","kind":"k","x":"","body":"b"})",
    };
    // Depth: 32 levels in all are accepted, 33 are not.
    for (size_t depth : {31, 32}) {
        std::string line;
        for (size_t i = 0; i < depth; ++i) line += "{\"k\":";
        line += "{}";
        for (size_t i = 0; i < depth; ++i) line += "}";
        lines.push_back(line);
    }
    // Field counts around the limit, and a message too big for one 64 KiB segment.
    for (size_t count : {16, 17, 1024, 1025}) {
        std::string line = "{";
        for (size_t i = 0; i < count; ++i)
            line += (i ? ",\"f" : "\"f") + std::to_string(i % 700) + "\":" + std::to_string(i);
        lines.push_back(line + "}");
    }
    lines.push_back(R"({"big":")" + std::string(70000, 'x') + R"(","n":1.5})");
    lines.push_back(R"({"big":")" + std::string(65400, 'x') + R"(","n":"y"})");

    JsonDecoder fast, reference(DecodePath::reference);
    for (const auto& line : lines) {
        for (auto padding : {Padding::absent, Padding::present}) {
            std::string padded = line + std::string(wire::k_read_padding_bytes, '}');
            std::string_view text(padded.data(), line.size());
            std::vector<std::byte> fast_frame, reference_frame;
            auto fast_reason = fast.decode(text, fast_frame, padding);
            auto reference_reason = reference.decode(text, reference_frame, padding);
            EXPECT_EQ(fast_reason, reference_reason) << line;
            EXPECT_EQ(fast_frame, reference_frame) << line;
        }
    }
}

// encode_frame reads the frame's words itself: for frames laid out as mh writes them it
// gives encode()'s line; for any other layout it declines and leaves the line alone.
TEST(JsonEncoder, EncodeFrameGivesEncodesLineOrDeclines) {
    auto via_reader = [](const std::vector<capnp::word>& words) {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
        JsonEncoder encoder;
        std::string line;
        encoder.encode(reader.getRoot<schema::Message>(), line);
        return line;
    };
    auto direct = [](const std::vector<capnp::word>& words, std::string& line) {
        JsonEncoder encoder;
        return encoder.encode_frame(wire::Frame{words.data(), words.size()}, line);
    };
    const char* lines[] = {
        R"({"id":"019b76da-a800-7000-9684-3b6e10e76dfa","time":1767225600000000000,"source":"s","gateway":"g","kind":"k","t":17.65,"n":-3,"ok":true,"s":"x\ny","j":[1,{"a":null}],"e":{},"m":{"r":1},"body":"b"})",
        R"({"$barrier":7,"time":5})", R"({})", R"({"body":{"base64":"/w=="},"x":""})",
    };
    for (const char* text : lines) {
        std::vector<std::byte> bytes;
        ASSERT_FALSE(JsonDecoder().decode(text, bytes)) << text;
        std::vector<capnp::word> words(bytes.size() / sizeof(capnp::word));
        std::memcpy(words.data(), bytes.data(), bytes.size());
        std::string line;
        ASSERT_TRUE(direct(words, line)) << text;
        EXPECT_EQ(line, via_reader(words)) << text;
    }
    // Built by Cap'n Proto in another order: still read directly, to the same line.
    capnp::MallocMessageBuilder builder;
    auto message = builder.initRoot<schema::Message>();
    auto fields = message.initFields(2);
    message.setKind("late");
    fields[1].setName("b");
    fields[1].getValue().setText("two");
    fields[0].setName("a");
    fields[0].getValue().setInt(1);
    auto words = capnp::messageToFlatArray(builder);
    std::vector<capnp::word> ordered(words.begin(), words.end());
    std::string line;
    ASSERT_TRUE(direct(ordered, line));
    EXPECT_EQ(line, R"({"kind":"late","a":1,"b":"two"})" "\n");
    EXPECT_EQ(line, via_reader(ordered));
    // Declined: two segments; a text without its NUL.
    capnp::MallocMessageBuilder small(1, capnp::AllocationStrategy::FIXED_SIZE);
    small.initRoot<schema::Message>().setSource("a source long enough for a second segment");
    auto two = capnp::messageToFlatArray(small);
    line.clear();
    EXPECT_FALSE(direct(std::vector<capnp::word>(two.begin(), two.end()), line));
    EXPECT_TRUE(line.empty());
    std::vector<capnp::word> broken = ordered;
    auto* raw = reinterpret_cast<char*>(broken.data());
    for (size_t i = 0; i + 5 <= broken.size() * 8; ++i)
        if (std::memcmp(raw + i, "late", 5) == 0) raw[i + 4] = 'x';
    EXPECT_FALSE(direct(broken, line));
    EXPECT_TRUE(line.empty());
}

// ---- JSON -> message: refusals ------------------------------------------------------------

TEST(JsonDecoder, RefusesWhatIsNotAnObject) {
    EXPECT_EQ(refusal("[1,2]"), "expected a JSON object");
    EXPECT_EQ(refusal("42"), "expected a JSON object");
    EXPECT_EQ(refusal(R"("text")"), "expected a JSON object");
    EXPECT_EQ(refusal("null"), "expected a JSON object");
}

TEST(JsonDecoder, RefusesBrokenJsonWithSimdjsonsReason) {
    EXPECT_EQ(refusal("not json"), "expected a JSON object");
    EXPECT_EQ(
        refusal(R"({"source":)"),
        "invalid JSON in the line: JSON document ended early in the middle of an object or array.");
    EXPECT_NE(refusal(R"({"a":1,})").find("invalid JSON after \"a\""), std::string::npos);
    EXPECT_NE(refusal(R"({"a":01})").find("invalid JSON in \"a\": Problem while parsing a number"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"m":{"x":tru}})").find("invalid JSON in \"m.x\""), std::string::npos);
    EXPECT_NE(refusal(R"({"a":[1,nul]})").find("\"a\": invalid JSON in an array"),
              std::string::npos);
    EXPECT_NE(refusal(R"({"a":1e999})").find("invalid JSON in \"a\""), std::string::npos);
    EXPECT_NE(refusal("{\"a\":\"\xFF\"}").find("UTF-8"), std::string::npos);
    EXPECT_NE(refusal("{\"a\":\"tab\tinside\"}").find("invalid JSON"), std::string::npos);
    EXPECT_EQ(refusal(R"({"a":1} {"b":2})"), "unexpected text after the JSON object");
    EXPECT_NE(refusal("").find("invalid JSON"), std::string::npos);
}

TEST(JsonDecoder, RefusesBadHeaderValues) {
    EXPECT_EQ(refusal(R"({"id":"nope"})"), "id: not a UUID");
    EXPECT_EQ(refusal(R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6"})"), "id: not a UUID");
    EXPECT_EQ(refusal(R"({"id":42})"), "id: not a UUID");
    EXPECT_EQ(refusal(R"({"time":1.5})"), "time: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(refusal(R"({"time":"yesterday"})"),
              "time: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(refusal(R"({"time":true})"), "time: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(refusal(R"({"time":9223372036854775808})"),
              "time: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(refusal(R"({"time":"2262-04-11T23:47:16.854775808Z"})"),
              "time: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(refusal(R"({"time":"9999-01-01T00:00:00Z"})"),
              "time: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(refusal(R"({"ingested":[]})"),
              "ingested: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(refusal(R"({"source":5})"), "source: expected a string");
    EXPECT_EQ(refusal(R"({"gateway":{}})"), "gateway: expected a string");
    EXPECT_EQ(refusal(R"({"kind":true})"), "kind: expected a string");
    EXPECT_EQ(refusal(R"({"body":5})"), R"(body: expected a string or {"base64": "..."})");
    EXPECT_EQ(refusal(R"({"body":{"hex":"00"}})"),
              R"(body: expected a string or {"base64": "..."})");
    EXPECT_EQ(refusal(R"({"body":{}})"), R"(body: expected a string or {"base64": "..."})");
    EXPECT_EQ(refusal(R"({"body":{"base64":"!!"}})"), "body: invalid base64");
}

TEST(JsonDecoder, RefusesBadBarriers) {
    EXPECT_EQ(refusal(R"({"$barrier":-1,"time":1})"),
              "$barrier: expected a checkpoint number (a non-negative integer)");
    EXPECT_EQ(refusal(R"({"$barrier":"1"})"),
              "$barrier: expected a checkpoint number (a non-negative integer)");
    EXPECT_EQ(refusal(R"({"$barrier":1,"time":1,"source":"x"})"),
              R"($barrier: a barrier has no "source" (only "time"))");
}

TEST(JsonDecoder, RefusesMoreThanTheMaximumOfFields) {
    auto object_with = [](size_t fields) {
        std::string line = "{";
        for (size_t i = 0; i < fields; ++i)
            line += (i ? ",\"f" : "\"f") + std::to_string(i) + "\":1";
        return line + "}";
    };
    EXPECT_EQ(refusal(object_with(k_max_fields)), "");
    EXPECT_EQ(refusal(object_with(k_max_fields + 1)), "more than 1024 fields");
}

TEST(JsonDecoder, RefusesNestingDeeperThanTheLimit) {
    auto nested = [](size_t depth, char open, char close) {
        // `depth` levels in all, the line's own object being the first.
        std::string line = "{\"a\":";
        for (size_t i = 1; i < depth; ++i) line += open == '{' ? "{\"a\":" : "[";
        line += "1";
        for (size_t i = 1; i < depth; ++i) line += close;
        return line + "}";
    };
    EXPECT_EQ(refusal(nested(k_max_json_depth, '{', '}')), "");
    EXPECT_EQ(refusal(nested(k_max_json_depth + 1, '{', '}')), "nested deeper than 32 levels");
    EXPECT_EQ(refusal(nested(k_max_json_depth, '[', ']')), "");
    EXPECT_NE(refusal(nested(k_max_json_depth + 1, '[', ']')).find("nested deeper than 32 levels"),
              std::string::npos);
}

// ---- message -> JSON ------------------------------------------------------------------------

TEST(JsonEncoder, WritesTheHeaderFieldsAndBodyInAFixedOrder) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    // Set out of order on purpose: the output order is the encoder's.
    m.setBody(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>("payload"), 7));
    auto fields = m.initFields(2);
    fields[0].setName("temperature");
    fields[0].getValue().setFloat(21.5);
    fields[1].setName("count");
    fields[1].getValue().setInt(3);
    m.setKind("telemetry");
    m.setGateway("gw-01");
    m.setSource("s1");
    m.setIngested(2);
    m.setTime(1);
    uint8_t id[16] = {0x01, 0x90, 0xa6, 0xb2, 0x3c, 0x4d, 0x7e, 0x8f,
                      0x9a, 0x0b, 0x1c, 0x2d, 0x3e, 0x4f, 0x5a, 0x6b};
    m.setId(capnp::Data::Reader(id, 16));
    EXPECT_EQ(
        encode(m),
        R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b","time":1,"ingested":2,"source":"s1",)"
        R"("gateway":"gw-01","kind":"telemetry","temperature":21.5,"count":3,"body":"payload"})");
}

TEST(JsonEncoder, LeavesOutWhatIsEmptyOrZero) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    EXPECT_EQ(encode(m), "{}");
    m.setSource("");
    m.setBody(capnp::Data::Reader());
    m.setTime(0);
    EXPECT_EQ(encode(m), "{}");
}

TEST(JsonEncoder, WritesTimesAsRfc3339OnRequest) {
    EXPECT_EQ(round_trip(R"({"time":1795702842500000000,"ingested":1})", TimeFormat::rfc3339),
              R"({"time":"2026-11-26T14:20:42.500Z","ingested":"1970-01-01T00:00:00.000000001Z"})");
    EXPECT_EQ(round_trip(R"({"$barrier":3,"time":1795702842000000000})", TimeFormat::rfc3339),
              R"({"$barrier":3,"time":"2026-11-26T14:20:42Z"})");
}

TEST(JsonEncoder, FloatsAlwaysReadBackAsFloats) {
    auto with_float = [](double value) {
        capnp::MallocMessageBuilder builder;
        auto field = builder.initRoot<schema::Message>().initFields(1)[0];
        field.setName("x");
        field.getValue().setFloat(value);
        return encode(builder.getRoot<schema::Message>());
    };
    EXPECT_EQ(with_float(21.0), R"({"x":21.0})");
    EXPECT_EQ(with_float(21.5), R"({"x":21.5})");
    EXPECT_EQ(with_float(0.1), R"({"x":0.1})");
    EXPECT_EQ(with_float(-0.0), R"({"x":-0.0})");
    EXPECT_EQ(with_float(1e300), R"({"x":1e+300})");
    EXPECT_EQ(with_float(1.0 / 3), R"({"x":0.3333333333333333})");  // shortest that reads back
    EXPECT_EQ(with_float(std::nan("")), R"({"x":null})");
    EXPECT_EQ(with_float(-INFINITY), R"({"x":null})");
}

// append_float writes common values itself: it must give fmt's shortest text, with ".0"
// where that has no point, for every double, whatever path writes it.
TEST(JsonEncoder, FloatsAreFmtsShortestTextWhicheverPathWritesThem) {
    auto expected = [](double value) {
        std::string text = fmt::format("{}", value);
        if (text.find_first_of(".en") == std::string::npos) text += ".0";
        return text;
    };
    std::vector<double> values = {0.0, -0.0, 1e-3, 9.99e-4, 1e15, 999999999999999.0,
                                  1e15 - 0.5, 0.1 + 0.2, 17.65, 1012.72, 60.9, 91.8, -3.5,
                                  123456789.12345678, 0.00123456789, 5e-324, 1e300, 4503599627370497.0};
    uint64_t state = 12345;
    auto next = [&] {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return state >> 11;
    };
    for (int i = 0; i < 200000; ++i) {
        // Decimals with few digits, as sensors send, read the way a parser reads them...
        int fraction_digits = static_cast<int>(next() % 10);
        uint64_t digits = next() % 10000000000000000ULL / (next() % 1000000000 + 1);
        double value = std::stod(std::to_string(digits) + "e-" + std::to_string(fraction_digits));
        values.push_back(i % 2 ? value : -value);
        // ...and any bits at all.
        uint64_t bits = next() << 11 | next() >> 42;
        double any;
        std::memcpy(&any, &bits, sizeof(any));
        if (std::isfinite(any)) values.push_back(any);
    }
    for (double value : values) {
        std::string text;
        json::append_float(text, value);
        ASSERT_EQ(text, expected(value)) << fmt::format("{:a}", value);
    }
}

// The short path writes decimals of up to eight digits from one word of digits: every
// count of whole and fraction digits, leading zeros after the point ("0.05"), the edges
// at 10^8 digits, and a million random decimals of that size must read as fmt writes them.
TEST(JsonEncoder, ShortDecimalsOfEveryLengthAreFmtsShortestText) {
    auto expected = [](double value) {
        std::string text = fmt::format("{}", value);
        if (text.find_first_of(".en") == std::string::npos) text += ".0";
        return text;
    };
    auto check = [&](double value) {
        for (double signed_value : {value, -value}) {
            std::string text;
            json::append_float(text, signed_value);
            ASSERT_EQ(text, expected(signed_value)) << fmt::format("{:a}", signed_value);
        }
    };
    const uint64_t edges[] = {1,        5,        9,        10,       11,       99,       100,      101,
                              999,      1000,     1001,     9999,     10000,    12345,    99999,    100000,
                              999999,   1000000,  9999999,  10000000, 12345678, 99999999, 100000000,
                              100000001, 123456789, 999999999, 1000000000};
    for (int k = 0; k <= 9; ++k)
        for (uint64_t digits : edges) {
            check(std::stod(std::to_string(digits) + "e-" + std::to_string(k)));
            for (uint64_t near : {digits - 1, digits + 1})
                check(std::stod(std::to_string(near) + "e-" + std::to_string(k)));
        }
    for (double value : {0.001, 0.0015, 0.00999, 0.01, 0.05, 0.1, 0.5, 0.99999999, 0.12345678,
                         1.0, 1.5, 9.99999999, 10.0, 17.65, 99999999.0, 99999999.5, 9999999.9,
                         1234567.8, 12345.678, 100000000.0, 0.00012345678, 1e8 - 1e-8})
        check(value);
    uint64_t state = 99;
    auto next = [&] {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return state >> 11;
    };
    for (int i = 0; i < 1000000; ++i) {
        int length = static_cast<int>(next() % 9) + 1;  // 1 to 9 digits
        uint64_t digits = next() % static_cast<uint64_t>(std::pow(10, length)) + 1;
        int fraction_digits = static_cast<int>(next() % 10);
        check(std::stod(std::to_string(digits) + "e-" + std::to_string(fraction_digits)));
    }
}

// encode_frame checks texts and names for bytes to escape (and names for dots) eight or
// four bytes at a time: every length up to 40, with each byte that matters at each place,
// must give the line that encode() writes through Cap'n Proto's reader.
TEST(JsonEncoder, EncodeFrameEscapesEveryByteWhereverItIs) {
    const unsigned char bytes[] = {0x00, 0x01, 0x0A, 0x1F, 0x20, 0x21, '"',  0x23, '.',  0x2D, 0x2F,
                                   0x5B, '\\', 0x5D, 0x7E, 0x7F, 0x80, 0x85, 0xA9, 0xC3, 0xFE, 0xFF};
    JsonEncoder encoder;
    auto check = [&](const std::string& text) {
        capnp::MallocMessageBuilder builder;
        auto message = builder.initRoot<schema::Message>();
        message.setSource(text);
        message.setKind(text);
        auto fields = message.initFields(2);
        fields[0].setName(text);
        fields[0].getValue().setText(text);
        fields[1].setName("b" + text);
        fields[1].getValue().setFloat(1.5);
        auto flat = capnp::messageToFlatArray(builder);
        std::vector<capnp::word> words(flat.begin(), flat.end());
        std::string direct, via_reader;
        ASSERT_TRUE(encoder.encode_frame(wire::Frame{words.data(), words.size()}, direct));
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
        encoder.encode(reader.getRoot<schema::Message>(), via_reader);
        ASSERT_EQ(direct, via_reader) << text;
    };
    for (size_t length = 0; length <= 40; ++length) {
        std::string plain;
        for (size_t i = 0; i < length; ++i) plain += static_cast<char>('a' + i % 26);
        check(plain);
        for (size_t at = 0; at < length; ++at)
            for (unsigned char byte : bytes) {
                std::string text = plain;
                text[at] = static_cast<char>(byte);
                check(text);
            }
    }
}

TEST(JsonEncoder, EscapesControlsKeepsUtf8AndReplacesInvalidBytes) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    m.setSource("quote \" backslash \\ newline \n tab \t nul \x01 c1 \xC2\x85");
    auto field = m.initFields(1)[0];
    field.setName("caf\xC3\xA9");
    field.getValue().setText("\xF0\x9F\x98\x80 bad:\xFF\xC3");
    EXPECT_EQ(encode(m), R"({"source":"quote \" backslash \\ newline \n tab \t nul \u0001 c1 \u0085",)"
                         "\"caf\xC3\xA9\":\"\xF0\x9F\x98\x80 bad:\xEF\xBF\xBD\xEF\xBF\xBD\"}");
}

TEST(JsonEncoder, CanWriteOnlyAscii) {
    std::string out;
    json::append_string(out, "caf\xC3\xA9 \xF0\x9F\x98\x80", json::NonAscii::escape);
    EXPECT_EQ(out, R"("caf\u00e9 \ud83d\ude00")");
}

TEST(JsonEncoder, WritesABodyThatIsNotUtf8AsBase64) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    const capnp::byte bytes[] = {0x00, 0xFF, 0x10};
    m.setBody(capnp::Data::Reader(bytes, 3));
    EXPECT_EQ(encode(m), R"({"body":{"base64":"AP8Q"}})");
    EXPECT_EQ(round_trip(R"({"body":{"base64":"AP8Q"}})"), R"({"body":{"base64":"AP8Q"}})");
    // Bytes that happen to be UTF-8 come back as a string: the same bytes.
    EXPECT_EQ(round_trip(R"({"body":{"base64":"aGk="}})"), R"({"body":"hi"})");
}

TEST(JsonEncoder, WritesJsonFieldsAsTheyAreWhenValid) {
    capnp::MallocMessageBuilder builder;
    auto fields = builder.initRoot<schema::Message>().initFields(4);
    fields[0].setName("ok");
    fields[0].getValue().setJson("[1, {\"a\": null}]");
    fields[1].setName("broken");
    fields[1].getValue().setJson("[1,");
    fields[2].setName("lines");
    fields[2].getValue().setJson("[1,\n2]");
    fields[3].setName("two");
    fields[3].getValue().setJson("1 2");
    EXPECT_EQ(encode(builder.getRoot<schema::Message>()),
              R"({"ok":[1, {"a": null}],"broken":"[1,","lines":[1, 2],"two":"1 2"})");
}

TEST(JsonEncoder, DottedNamesNestAgainGroupedByFirstAppearance) {
    EXPECT_EQ(round_trip(
                  R"({"motor.rpm":1500,"ok":true,"motor.temp.winding":71.5,"motor.temp.case":40})"),
              R"({"motor":{"rpm":1500,"temp":{"winding":71.5,"case":40}},"ok":true})");
}

TEST(JsonEncoder, KeepsDottedKeysThatCannotNest) {
    // "a" is a field of its own, so "a.b" cannot live inside it.
    EXPECT_EQ(round_trip(R"({"a":1,"a.b":2,"a.c.d":3})"), R"({"a":1,"a.b":2,"a.c.d":3})");
    // Empty segments have no nested form.
    EXPECT_EQ(round_trip(R"({"a..b":1,".c":2,"d.":3})"), R"({"a..b":1,".c":2,"d.":3})");
    // Nesting under a header name would read back as that header.
    EXPECT_EQ(round_trip(R"({"source.x":1,"time.zone":"UTC"})"),
              R"({"source.x":1,"time.zone":"UTC"})");
}

TEST(JsonEncoder, WritesBarriers) {
    EXPECT_EQ(round_trip(R"({"$barrier":12,"time":1795706444000000000})"),
              R"({"$barrier":12,"time":1795706444000000000})");
}

// ---- round trips ----------------------------------------------------------------------------

TEST(JsonRoundTrip, TheFlatShapeComesBackByteForByte) {
    const char* lines[] = {
        R"({"id":"019ac0d2-7e3a-7a2b-8c4d-5e6f708192a3","time":1795706442123000000,"source":"sensor-000001","gateway":"gw-01","kind":"telemetry","temperature":21.5,"humidity":40.0,"count":7,"ok":true,"status":"fine \"quoted\" é °C","body":"raw payload"})",
        R"({"time":1795706443000000000,"source":"sensor-000002","kind":"event","door":"open","negative":-3,"tiny":1e-300})",
        "{\"time\":-1,\"ingested\":2,\"x\":-0.5,\"y\":false,\"z\":\"\",\"w\":\"\xF0\x9F\x98\x80\"}",
        R"({"source":"sensor-000003","samples":[1,2,3],"nothing":null,"big":123456789012345678901234567890})",
        R"({"body":{"base64":"AP8Q"}})",
        R"({"$barrier":12,"time":1795706444000000000})",
    };
    for (const char* line : lines) EXPECT_EQ(round_trip(line), line);
}

TEST(JsonRoundTrip, NestedObjectsComeBackNested) {
    const char* line =
        R"({"source":"pump-7","motor":{"rpm":1500,"temp":{"winding":71.5}},"ok":true})";
    EXPECT_EQ(round_trip(line), line);
}

TEST(JsonRoundTrip, OtherShapesComeBackAsTheSameMessage) {
    // Spaces, key order, id spelling, RFC 3339 times: normalized once, then stable.
    const char* line =
        R"( { "kind" : "k", "time" : "2026-11-26T15:20:42Z", "id":"0190A6B23C4D7E8F9A0B1C2D3E4F5A6B", "a" : [1, 2] } )";
    std::string once = round_trip(line);
    EXPECT_EQ(
        once,
        R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b","time":1795706442000000000,"kind":"k","a":[1, 2]})");
    EXPECT_EQ(round_trip(once), once);
}

// ---- sources and sinks over file descriptors ------------------------------------------------

TEST(JsonLineSource, ReadsOneFramePerLineSkippingEmptyLines) {
    TempFile input("{\"source\":\"a\"}\n\n   \n{\"source\":\"b\"}\r\n{\"source\":\"c\"}");
    Log log("test");
    JsonLineSource source(input.fd(), nullptr, log);
    TempFile output;
    JsonSink sink(output.fd());
    wire::Frame frame;
    while (source.next(wire::Wait::yes, frame) == wire::Next::frame) sink.write(frame);
    sink.flush();
    EXPECT_EQ(output.content(), "{\"source\":\"a\"}\n{\"source\":\"b\"}\n{\"source\":\"c\"}\n");
    EXPECT_EQ(source.rejected(), 0u);
}

TEST(JsonLineSource, SkipsAndCountsBadLines) {
    TempFile input("{\"x\":1}\n{\"source\":\nnot json\n[1,2]\n{\"x\":2}\n");
    Log log("test", LogLevel::error);  // quiet: the warnings are what is tested elsewhere
    JsonLineSource source(input.fd(), nullptr, log);
    wire::Frame frame;
    int frames = 0;
    wire::Next next;
    while ((next = source.next(wire::Wait::yes, frame)) == wire::Next::frame) ++frames;
    EXPECT_EQ(next, wire::Next::end);
    EXPECT_EQ(frames, 2);
    EXPECT_EQ(source.rejected(), 3u);
}

TEST(JsonLineSource, StrictStopsAtTheFirstBadLineNamingIt) {
    TempFile input("{\"x\":1}\n[1,2]\n{\"x\":2}\n");
    Log log("test");
    JsonLineSource source(input.fd(), nullptr, log, Strict::yes);
    wire::Frame frame;
    EXPECT_EQ(source.next(wire::Wait::yes, frame), wire::Next::frame);
    EXPECT_EQ(source.next(wire::Wait::yes, frame), wire::Next::broken);
    EXPECT_EQ(source.error(), "line 2: expected a JSON object");
}

TEST(JsonLineSource, RefusesLinesLongerThanTheFrameLimit) {
    std::string long_line = "{\"x\":\"" + std::string(200, 'y') + "\"}";
    TempFile input(long_line + "\n{\"x\":1}\n");
    Log log("test");
    JsonLineSource source(input.fd(), nullptr, log, Strict::yes, wire::FrameLimits{128});
    wire::Frame frame;
    EXPECT_EQ(source.next(wire::Wait::yes, frame), wire::Next::broken);
    EXPECT_EQ(source.error(), "line 1: longer than the limit of 128 bytes");
}

TEST(JsonLineSource, RefusesMessagesOverTheFrameLimit) {
    // Short JSON, big frame: every field costs a few words.
    std::string line = "{";
    for (int i = 0; i < 20; ++i)
        line += (i ? ",\"" : "\"") + std::string(1, char('a' + i)) + "\":1";
    line += "}";
    TempFile input(line + "\n");
    Log log("test");
    JsonLineSource source(input.fd(), nullptr, log, Strict::yes, wire::FrameLimits{256});
    wire::Frame frame;
    EXPECT_EQ(source.next(wire::Wait::yes, frame), wire::Next::broken);
    EXPECT_NE(source.error().find("line 1: message of "), std::string::npos);
    EXPECT_NE(source.error().find("over the frame limit of 256 bytes"), std::string::npos);
}

TEST(JsonSink, SkipsAndCountsFramesItCannotRead) {
    TempFile output;
    JsonSink sink(output.fd());
    // A segment table announcing one word, then a root pointer far out of bounds.
    alignas(8) const uint32_t garbled[4] = {0, 1, 0xFFFFFFF0u, 0x00010000u};
    sink.write(wire::Frame{reinterpret_cast<const capnp::word*>(garbled), 2});
    sink.flush();
    EXPECT_EQ(sink.rejected(), 1u);
    EXPECT_FALSE(sink.last_error().empty());
    EXPECT_EQ(output.content(), "");
}

// check_and_write() judges each frame as check_frame() does and writes what write() writes
// for the frames that pass: mh's layout (read once), Cap'n Proto's other layouts and frames
// past the limit (the long way), garbled ones (reason given, nothing written).
TEST(JsonSink, CheckAndWriteIsCheckFrameThenWrite) {
    std::vector<std::vector<capnp::word>> frames;
    auto add_line = [&](const char* text) {
        std::vector<std::byte> bytes;
        ASSERT_FALSE(JsonDecoder().decode(text, bytes)) << text;
        std::vector<capnp::word> words(bytes.size() / sizeof(capnp::word));
        std::memcpy(words.data(), bytes.data(), bytes.size());
        frames.push_back(words);
    };
    add_line(R"({"id":"019b76da-a800-7000-9684-3b6e10e76dfa","time":1767225600000000000,"source":"s","t":17.65})");
    add_line(R"({"a":"x\ny","b.c":1,"j":[1,{"a":null}],"body":"b"})");
    add_line(R"({"$barrier":7,"time":5})");
    add_line((R"({"source":")" + std::string(300, 'x') + R"(","n":1})").c_str());
    capnp::MallocMessageBuilder small(1, capnp::AllocationStrategy::FIXED_SIZE);
    small.initRoot<schema::Message>().setSource("a source long enough for a second segment");
    auto two = capnp::messageToFlatArray(small);
    frames.emplace_back(two.begin(), two.end());
    alignas(8) const uint32_t garbled[4] = {0, 1, 0xFFFFFFF0u, 0x00010000u};
    frames.emplace_back(reinterpret_cast<const capnp::word*>(garbled),
                        reinterpret_cast<const capnp::word*>(garbled) + 2);
    std::vector<capnp::word> no_nul = frames[0];
    auto* raw = reinterpret_cast<char*>(no_nul.data());
    for (size_t i = 0; i + 2 <= no_nul.size() * 8; ++i)
        if (std::memcmp(raw + i, "s", 2) == 0) raw[i + 1] = 'x';
    frames.push_back(no_nul);
    // Less than any frame (all go the long way), the first frame's size (the long one is
    // past it), and plenty.
    for (size_t limit : {size_t{16}, frames[0].size() * sizeof(capnp::word), size_t{1} << 20}) {
        wire::FrameLimits limits{limit};
        TempFile checked_output, reference_output;
        // Sinks with the default limit: the limit passed in is the one that judges.
        JsonSink checked(checked_output.fd());
        JsonSink reference(reference_output.fd());
        size_t passed = 0;
        for (const auto& words : frames) {
            wire::Frame frame{words.data(), words.size()};
            auto expected = wire::check_frame(frame, limits);
            auto got = checked.check_and_write(frame, limits);
            ASSERT_EQ(got.has_value(), expected.has_value()) << words.size() << " words, limit " << limit;
            if (expected) {
                EXPECT_EQ(*got, *expected);
                continue;
            }
            ++passed;
            reference.write(frame);
        }
        EXPECT_GE(passed, 5u);  // the opener (the long way) passes what mh's layout reads
        EXPECT_LT(passed, frames.size());
        checked.flush();
        reference.flush();
        EXPECT_EQ(checked_output.content(), reference_output.content());
        EXPECT_EQ(checked.rejected(), reference.rejected());
    }
}

}  // namespace

// decode_view() reads as decode() does: the views written back (wire::append_message_view)
// are the very bytes decode() writes, on the flat path, the DOM path and the reference one,
// and it refuses what decode() refuses, for the same reason.
TEST(JsonDecoder, DecodeViewGivesTheBytesDecodeWrites) {
    const char* lines[] = {
        R"({"temperature":21.5,"humidity":40,"status":"ok","on":true,"site":"north-field-3"})",
        R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b","time":1764170442123000000,"source":"s-1",)"
        R"("gateway":"gw","kind":"telemetry","motor":{"rpm":1200,"on":false},"body":"payload"})",
        R"({"name":"a \"quoted\" \u00e9 text","list":[1,2,3],"nothing":null,"":"empty key","e":""})",
        R"({"a":1,"a":2,"b":{"c":"x"},"body":{"base64":"AAECAw=="}})",
        R"({"$barrier":7,"time":5})",
        R"({})",
    };
    for (DecodePath path : {DecodePath::fast, DecodePath::reference}) {
        JsonDecoder decoder(path), viewer(path);
        for (const char* line : lines) {
            std::vector<std::byte> decoded, written;
            ASSERT_FALSE(decoder.decode(line, decoded)) << line;
            wire::MessageView view;
            ASSERT_FALSE(viewer.decode_view(line, view)) << line;
            wire::append_message_view(view, written);
            EXPECT_EQ(written, decoded) << line;
            EXPECT_EQ(wire::message_view_bytes(view), decoded.size()) << line;
        }
        for (const char* bad : {"[1,2]", R"({"time":"yesterday"})", R"({"a":1)"}) {
            std::vector<std::byte> decoded;
            wire::MessageView view;
            auto expected = decoder.decode(bad, decoded);
            auto got = viewer.decode_view(bad, view);
            ASSERT_TRUE(expected && got) << bad;
            EXPECT_EQ(*got, *expected);
        }
    }
}
