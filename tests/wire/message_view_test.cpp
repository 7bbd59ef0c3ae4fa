// Message views written back: append_message_view() must give the very words Cap'n Proto's
// builder writes for the same message, which read_message_view(), check_frame() and Cap'n
// Proto's reader all read back the same.
#include "message/scratch_builder.h"
#include "wire/message_view.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <cstring>

using namespace mh;
using namespace mh::wire;

namespace {

std::vector<std::byte> built(bool barrier) {
    ScratchBuilder scratch;
    auto message = scratch.start();
    if (barrier) {
        auto b = message.getControl().initBarrier();
        b.setNumber(42);
        b.setTime(1'700'000'000'000'000'000);
    } else {
        uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        message.setId(kj::arrayPtr(id, 16));
        message.setTime(1'700'000'000'000'000'000);
        message.setIngested(1'700'000'000'100'000'000);
        message.setSource("sensor-0001");
        message.setGateway("gw-01");
        message.setKind("telemetry");
        auto fields = message.initFields(5);
        fields[0].setName("temperature");
        fields[0].getValue().setFloat(21.5);
        fields[1].setName("count");
        fields[1].getValue().setInt(-7);
        fields[2].setName("ok");
        fields[2].getValue().setBool(true);
        fields[3].setName("site");
        fields[3].getValue().setText("north-field-3, a name of more than eight bytes");
        fields[4].setName("list");
        fields[4].getValue().setJson("[1,2,3]");
        const char body[] = "opaque\0bytes";
        message.setBody(kj::arrayPtr(reinterpret_cast<const kj::byte*>(body), sizeof(body)));
    }
    std::vector<std::byte> bytes;
    append_frame(scratch.builder(), bytes);
    return bytes;
}

Frame frame_of(const std::vector<std::byte>& bytes) {
    return {reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / sizeof(capnp::word)};
}

}  // namespace

TEST(MessageView, WritesTheBuildersWords) {
    for (bool barrier : {false, true}) {
        auto original = built(barrier);
        MessageView view;
        ASSERT_TRUE(read_message_view(frame_of(original), &view));
        std::vector<std::byte> written;
        append_message_view(view, written);
        EXPECT_EQ(written, original) << (barrier ? "barrier" : "message");
        EXPECT_FALSE(check_frame(frame_of(written), {}));
    }
}

TEST(MessageView, ChangedHeaderReadsBackThroughCapnProto) {
    auto original = built(false);
    MessageView view;
    ASSERT_TRUE(read_message_view(frame_of(original), &view));
    view.gateway = "gw-with-a-longer-name";
    view.source = "s";
    view.kind = "";  // empty parts are left unset
    view.ingested = 5;
    std::vector<std::byte> written(8, std::byte{0xee});  // appended after what is there
    append_message_view(view, written);
    std::vector<std::byte> frame(written.begin() + 8, written.end());
    ASSERT_FALSE(check_frame(frame_of(frame), {}));
    capnp::FlatArrayMessageReader reader(
        kj::arrayPtr(reinterpret_cast<const capnp::word*>(frame.data()), frame.size() / sizeof(capnp::word)));
    auto message = reader.getRoot<schema::Message>();
    EXPECT_EQ(std::string(message.getGateway().cStr()), "gw-with-a-longer-name");
    EXPECT_EQ(std::string(message.getSource().cStr()), "s");
    EXPECT_FALSE(message.hasKind());
    EXPECT_EQ(message.getIngested(), 5);
    EXPECT_EQ(message.getTime(), 1'700'000'000'000'000'000);
    EXPECT_EQ(message.getId().size(), 16u);
    ASSERT_EQ(message.getFields().size(), 5u);
    EXPECT_EQ(message.getFields()[0].getValue().getFloat(), 21.5);
    EXPECT_EQ(message.getFields()[1].getValue().getInt(), -7);
    EXPECT_TRUE(message.getFields()[2].getValue().getBool());
    EXPECT_EQ(std::string(message.getFields()[4].getValue().getJson().cStr()), "[1,2,3]");
    EXPECT_EQ(message.getBody().size(), 13u);
    MessageView again;
    ASSERT_TRUE(read_message_view(frame_of(frame), &again));
    EXPECT_EQ(again.fields[3].text, "north-field-3, a name of more than eight bytes");
}
