// The frame opener: the hand walk over a one-segment frame's pointers must accept what mh
// writes, refuse every pointer that leaves the segment, and hand the rest to Cap'n Proto.
#include "message/scratch_builder.h"
#include "wire/frame_opener.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <cstring>

using namespace mh;
using namespace mh::wire;

namespace {

std::vector<capnp::word> one_message() {
    ScratchBuilder scratch;
    auto message = scratch.start();
    message.setSource("sensor-1");
    message.setKind("telemetry");
    auto fields = message.initFields(2);
    fields[0].setName("temperature");
    fields[0].getValue().setFloat(21.5);
    fields[1].setName("site");
    fields[1].getValue().setText("north");
    std::vector<std::byte> bytes;
    append_frame(scratch.builder(), bytes);
    std::vector<capnp::word> words(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.data(), bytes.data(), bytes.size());
    return words;
}

Frame frame_of(const std::vector<capnp::word>& words) { return {words.data(), words.size()}; }

// Word `index` of the segment (after the one-word segment table), as a raw pointer word.
uint64_t& segment_word(std::vector<capnp::word>& words, size_t index) {
    return *reinterpret_cast<uint64_t*>(words.data() + 1 + index);
}

Layout layout_of(const std::vector<capnp::word>& words, const char** reason) {
    return check_layout(frame_of(words), reader_options({}), reason);
}

}  // namespace

TEST(FrameOpener, OpensWhatMhWritesAndReadsItBack) {
    auto words = one_message();
    const char* reason = nullptr;
    EXPECT_EQ(layout_of(words, &reason), Layout::sound);
    FrameOpener opener({});
    ASSERT_FALSE(opener.open(frame_of(words)));
    auto message = opener.message();
    EXPECT_EQ(std::string(message.getSource().cStr()), "sensor-1");
    ASSERT_EQ(message.getFields().size(), 2u);
    EXPECT_EQ(std::string(message.getFields()[1].getValue().getText().cStr()), "north");
}

TEST(FrameOpener, RefusesARootPointerOutOfTheSegment) {
    auto words = one_message();
    segment_word(words, 0) = (uint64_t{1} << 32) | (uint64_t{0x00fffff0} << 2);  // struct far past the end
    const char* reason = nullptr;
    EXPECT_EQ(layout_of(words, &reason), Layout::garbled);
    EXPECT_STREQ(reason, "message contains an out-of-bounds pointer");
    FrameOpener opener({});
    auto refused = opener.open(frame_of(words));
    ASSERT_TRUE(refused);
    EXPECT_EQ(*refused, "message contains an out-of-bounds pointer");
}

TEST(FrameOpener, RefusesAListThatRunsPastTheSegment) {
    // A root struct with no data and one pointer: a byte list claiming far more bytes than exist.
    std::vector<capnp::word> words(4);
    uint32_t table[2] = {0, 3};
    std::memcpy(words.data(), table, sizeof(table));
    segment_word(words, 0) = uint64_t{1} << 48;                                     // struct: 0 data, 1 pointer
    segment_word(words, 1) = 1 | (uint64_t{2} << 32) | (uint64_t{1000} << 35);      // bytes, 1000 of them
    const char* reason = nullptr;
    EXPECT_EQ(layout_of(words, &reason), Layout::garbled);
    EXPECT_STREQ(reason, "message contains an out-of-bounds list");
}

TEST(FrameOpener, ChargesEmptyElementsAgainstTheTraversalLimit) {
    // 2^29 void elements take no room but would take a reader long to iterate.
    std::vector<capnp::word> words(3);
    uint32_t table[2] = {0, 2};
    std::memcpy(words.data(), table, sizeof(table));
    segment_word(words, 0) = uint64_t{1} << 48;
    segment_word(words, 1) = 1 | (uint64_t{0} << 32) | (uint64_t{(1u << 29) - 1} << 35);
    const char* reason = nullptr;
    EXPECT_EQ(check_layout(frame_of(words), reader_options({4096}), &reason), Layout::garbled);
    EXPECT_STREQ(reason, "message exceeds the traversal limit");
}

TEST(FrameOpener, RefusesCapabilityPointers) {
    auto words = one_message();
    segment_word(words, 0) = 3;
    const char* reason = nullptr;
    EXPECT_EQ(layout_of(words, &reason), Layout::garbled);
}

TEST(FrameOpener, LeavesFarPointersAndSeveralSegmentsToCapnProto) {
    auto words = one_message();
    uint64_t root = segment_word(words, 0);
    segment_word(words, 0) = 2;  // a far pointer
    const char* reason = nullptr;
    EXPECT_EQ(layout_of(words, &reason), Layout::not_simple);
    FrameOpener opener({});
    EXPECT_TRUE(opener.open(frame_of(words)));  // Cap'n Proto's checked reader refuses it
    segment_word(words, 0) = root;

    capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);  // tiny segments
    auto message = builder.initRoot<schema::Message>();
    message.setSource("a-source-long-enough-to-need-a-second-segment");
    auto segments = capnp::messageToFlatArray(builder);
    std::vector<capnp::word> several(segments.begin(), segments.end());
    ASSERT_GT(builder.getSegmentsForOutput().size(), 1u);
    EXPECT_EQ(layout_of(several, &reason), Layout::not_simple);
    ASSERT_FALSE(opener.open(frame_of(several)));
    EXPECT_EQ(std::string(opener.message().getSource().cStr()), "a-source-long-enough-to-need-a-second-segment");
}

TEST(FrameOpener, AWrongKindOfPointerIsRefusedWhenRead) {
    // The source text made a list of 8-byte words: in bounds, so the walk lets it through, and
    // Cap'n Proto refuses it with an exception on read; check_frame() judges it at once.
    auto words = one_message();
    FrameOpener opener({});
    ASSERT_FALSE(opener.open(frame_of(words)));
    auto root = segment_word(words, 0);
    size_t data_words = (root >> 32) & 0xffff;
    size_t root_start = 1 + (static_cast<int32_t>(static_cast<uint32_t>(root)) >> 2);
    size_t source_pointer = root_start + data_words + 1;  // id is pointer 0, source pointer 1
    uint64_t& source = segment_word(words, source_pointer);
    uint64_t byte_count = source >> 35;
    source = (source & 0xffffffffu) | (uint64_t{5} << 32) | (((byte_count + 7) / 8) << 35);
    EXPECT_FALSE(opener.open(frame_of(words)));
    EXPECT_THROW(opener.message().getSource(), kj::Exception);
    EXPECT_TRUE(check_frame(frame_of(words), {}));
}

TEST(FrameOpener, TheReaderIsOfTheFrameLastOpened) {
    // For a frame in mh's own layout message() makes the reader when first asked: it must be
    // the last frame's, whichever way that frame was opened.
    auto first = one_message();
    ScratchBuilder scratch;
    scratch.start().setSource("sensor-2");
    std::vector<std::byte> bytes;
    append_frame(scratch.builder(), bytes);
    std::vector<capnp::word> second(bytes.size() / sizeof(capnp::word));
    std::memcpy(second.data(), bytes.data(), bytes.size());

    FrameOpener opener({});
    MessageView view;
    ASSERT_FALSE(opener.open(frame_of(first), view));
    ASSERT_TRUE(opener.own_layout());
    ASSERT_FALSE(opener.open(frame_of(second), view));  // no message() for the first
    EXPECT_EQ(std::string(opener.message().getSource().cStr()), "sensor-2");
    EXPECT_EQ(std::string(opener.message().getSource().cStr()), "sensor-2");  // made once

    // A root that is a list: in bounds, so the walk passes it, but not mh's layout, and
    // Cap'n Proto's refusal comes from open(), not from a later message().
    std::vector<capnp::word> list_root = first;
    segment_word(list_root, 0) = 1;  // a list pointer of void elements, count 0
    const char* reason = nullptr;
    EXPECT_EQ(layout_of(list_root, &reason), Layout::sound);
    auto refused = opener.open(frame_of(list_root), view);
    EXPECT_FALSE(opener.own_layout());
    if (!refused) {
        EXPECT_NO_THROW(opener.message());
    }

    ASSERT_FALSE(opener.open(frame_of(first)));  // without a view, still the own layout
    EXPECT_EQ(std::string(opener.message().getSource().cStr()), "sensor-1");
    EXPECT_FALSE(opener.open_checked(frame_of(second)));
    EXPECT_EQ(std::string(opener.message().getSource().cStr()), "sensor-2");
}
