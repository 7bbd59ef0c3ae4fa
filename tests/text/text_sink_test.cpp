// TextSink: one readable line per message for people at a terminal.
#include "text/text_sink.h"

#include "json/json_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include "support/support.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace {

using namespace mh;

// The text line for a message given as JSON.
std::string text_of(std::string_view json_line) {
    JsonDecoder decoder;
    std::vector<std::byte> bytes;
    auto reason = decoder.decode(json_line, bytes);
    EXPECT_FALSE(reason) << *reason;
    auto words = test::to_words(bytes);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    std::string line;
    TextSink::format(reader.getRoot<schema::Message>(), line);
    return line;
}

TEST(TextSink, ShowsTimeSourceGatewayKindFieldsAndBodySize) {
    EXPECT_EQ(
        text_of(
            R"({"time":"2026-11-26T15:20:42.123Z","source":"sensor-000123","gateway":"gw-01",)"
            R"("kind":"telemetry","temperature":21.5,"humidity":40.2,"status":"ok","body":"twelve bytes"})"),
        R"(2026-11-26T15:20:42.123Z sensor-000123 gw-01 telemetry temperature=21.5 humidity=40.2 status="ok" body=12B)");
}

TEST(TextSink, ShowsADashForWhatIsUnset) {
    EXPECT_EQ(text_of(R"({"source":"s1"})"), "- s1 - -");
    EXPECT_EQ(text_of("{}"), "- - - -");
}

TEST(TextSink, ShowsEveryKindOfValue) {
    EXPECT_EQ(
        text_of(
            R"({"time":1,"i":-3,"f":2.0,"b":false,"t":"caf\u00e9 \"x\"","j":[1, 2],"n":null,"m":{"rpm":5}})"),
        R"(1970-01-01T00:00:00.000000001Z - - - i=-3 f=2.0 b=false t="café \"x\"" j=[1, 2] n=null m.rpm=5)");
}

TEST(TextSink, EscapesWhatCouldGarbleATerminal) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<schema::Message>();
    m.setSource("evil\x1b[2Jsource");
    auto field = m.initFields(1)[0];
    field.setName("x");
    field.getValue().setText("bell\x07 c1:\xC2\x9B bad:\xFF");
    std::string line;
    TextSink::format(m, line);
    EXPECT_EQ(line, R"(- evil\u001b[2Jsource - - x="bell\u0007 c1:\u009b bad:)"
                    "\xEF\xBF\xBD\"");
}

TEST(TextSink, ShowsBarriers) {
    EXPECT_EQ(text_of(R"({"$barrier":12,"time":"2026-11-26T15:20:43Z"})"),
              "--- barrier 12 at 2026-11-26T15:20:43Z ---");
}

TEST(TextSink, WritesOneLinePerFrameAndShowsUnreadableOnes) {
    std::FILE* file = std::tmpfile();
    {
        TextSink sink(fileno(file));
        JsonDecoder decoder;
        std::vector<std::byte> bytes;
        ASSERT_FALSE(decoder.decode(R"({"source":"a","kind":"event"})", bytes));
        auto words = test::to_words(bytes);
        sink.write(wire::Frame{words.data(), words.size()});
        alignas(8) const uint32_t garbled[4] = {0, 1, 0xFFFFFFF0u, 0x00010000u};
        sink.write(wire::Frame{reinterpret_cast<const capnp::word*>(garbled), 2});
        sink.flush();
        EXPECT_EQ(sink.rejected(), 1u);
    }
    std::string text(4096, '\0');
    text.resize(static_cast<size_t>(pread(fileno(file), text.data(), text.size(), 0)));
    std::fclose(file);
    EXPECT_EQ(text.substr(0, text.find('\n') + 1), "- a - event\n");
    EXPECT_EQ(text.rfind("--- unreadable frame: ", text.find('\n') + 1), text.find('\n') + 1);
    EXPECT_EQ(text.back(), '\n');
}

}  // namespace
