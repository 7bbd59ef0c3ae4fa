// Frames on the wire: scanning the segment table, checking pointers, and reading a
// stream of frames from a file descriptor, including every way the stream can break.
#include "message/scratch_builder.h"
#include "wire/fd_input.h"
#include "wire/fd_output.h"
#include "wire/frame.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <thread>

using namespace mh;
using namespace mh::wire;

namespace {

std::vector<std::byte> make_frame(const std::string& source, double temperature) {
    ScratchBuilder scratch;
    auto message = scratch.start();
    message.setSource(source);
    message.setKind("telemetry");
    message.setTime(1'000);
    auto fields = message.initFields(1);
    fields[0].setName("temperature");
    fields[0].getValue().setFloat(temperature);
    std::vector<std::byte> out;
    append_frame(scratch.builder(), out);
    return out;
}

// Writes `bytes` into a pipe from a thread and returns the read end.
struct PipeFeed {
    explicit PipeFeed(std::vector<std::byte> bytes) {
        int fds[2];
        EXPECT_EQ(::pipe(fds), 0);
        read_fd = fds[0];
        writer = std::thread([fd = fds[1], data = std::move(bytes)] {
            size_t done = 0;
            while (done < data.size()) {
                ssize_t n = ::write(fd, data.data() + done, data.size() - done);
                if (n <= 0) break;
                done += static_cast<size_t>(n);
            }
            ::close(fd);
        });
    }
    ~PipeFeed() {
        writer.join();
        ::close(read_fd);
    }
    int read_fd;
    std::thread writer;
};

std::string source_of(const Frame& frame) {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
    return reader.getRoot<schema::Message>().getSource();
}

}  // namespace

TEST(ScanFrame, FindsTheLengthOfACompleteFrame) {
    auto bytes = make_frame("sensor-1", 21.5);
    auto scan = scan_frame(bytes, {});
    EXPECT_EQ(scan.status, ScanStatus::complete);
    EXPECT_EQ(scan.frame_bytes, bytes.size());
}

TEST(ScanFrame, AsksForMoreWhenCutShort) {
    auto bytes = make_frame("sensor-1", 21.5);
    EXPECT_EQ(scan_frame(std::span(bytes).first(4), {}).status, ScanStatus::incomplete);
    auto scan = scan_frame(std::span(bytes).first(bytes.size() - 8), {});
    EXPECT_EQ(scan.status, ScanStatus::incomplete);
    EXPECT_EQ(scan.frame_bytes, bytes.size());
}

TEST(ScanFrame, RefusesFramesOverTheLimitBeforeReadingThem) {
    auto bytes = make_frame("sensor-1", 21.5);
    auto scan = scan_frame(std::span(bytes).first(8), {.max_frame_bytes = 64});
    EXPECT_EQ(scan.status, ScanStatus::too_large);
}

TEST(ScanFrame, RefusesAbsurdSegmentTables) {
    std::vector<std::byte> bytes(16, std::byte{0xff});
    EXPECT_EQ(scan_frame(bytes, {}).status, ScanStatus::bad_segments);
    std::vector<std::byte> empty(8, std::byte{0});  // one segment of zero words
    EXPECT_EQ(scan_frame(empty, {}).status, ScanStatus::bad_segments);
}

TEST(ScanFrame, ReadsOneSegmentTablesAndLongerOnesAlike) {
    // One segment takes a shorter way than several: the same sums either way.
    auto table = [](std::initializer_list<uint32_t> words) {
        std::vector<uint32_t> table{static_cast<uint32_t>(words.size() - 1)};
        table.insert(table.end(), words);
        if (table.size() % 2) table.push_back(0);
        std::vector<std::byte> bytes(table.size() * 4);
        std::memcpy(bytes.data(), table.data(), bytes.size());
        return bytes;
    };
    auto one = table({5});
    EXPECT_EQ(scan_frame(one, {}).status, ScanStatus::incomplete);
    EXPECT_EQ(scan_frame(one, {}).frame_bytes, 8u + 5 * 8);
    one.resize(8 + 5 * 8);
    EXPECT_EQ(scan_frame(one, {}).status, ScanStatus::complete);
    auto three = table({1, 2, 2});  // a table of two words, then five words of segments
    EXPECT_EQ(scan_frame(three, {}).frame_bytes, 16u + 5 * 8);
    three.resize(16 + 5 * 8);
    EXPECT_EQ(scan_frame(three, {}).status, ScanStatus::complete);
    auto huge = table({0xffffffffu});
    auto scan = scan_frame(huge, {});
    EXPECT_EQ(scan.status, ScanStatus::too_large);
    EXPECT_EQ(scan.frame_bytes, 8 + size_t{0xffffffffu} * 8);
}

TEST(CheckFrame, AcceptsAGoodFrameAndExplainsAGarbledOne) {
    auto bytes = make_frame("sensor-1", 21.5);
    std::vector<capnp::word> aligned(bytes.size() / 8);
    std::memcpy(aligned.data(), bytes.data(), bytes.size());
    Frame frame{aligned.data(), aligned.size()};
    EXPECT_FALSE(check_frame(frame, {}));

    // Point the root at far beyond the segment: framing intact, content garbled.
    auto* root_pointer = reinterpret_cast<uint32_t*>(aligned.data() + 1);
    root_pointer[0] = 0x00fffff0;
    auto reason = check_frame(frame, {});
    ASSERT_TRUE(reason);
    EXPECT_FALSE(reason->empty());
}

TEST(FdFrameReader, ReadsFramesBackToBack) {
    std::vector<std::byte> stream;
    for (int i = 0; i < 1000; ++i) {
        auto one = make_frame("sensor-" + std::to_string(i), i);
        stream.insert(stream.end(), one.begin(), one.end());
    }
    PipeFeed feed(stream);
    FdFrameReader reader(feed.read_fd, nullptr);
    Frame frame;
    for (int i = 0; i < 1000; ++i) {
        ASSERT_EQ(reader.next(Wait::yes, frame), Next::frame);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(frame.words) % 8, 0u);
        EXPECT_EQ(source_of(frame), "sensor-" + std::to_string(i));
    }
    EXPECT_EQ(reader.next(Wait::yes, frame), Next::end);
}

TEST(FdFrameReader, ReadsAFrameLargerThanItsBuffer) {
    ScratchBuilder scratch;
    auto message = scratch.start();
    std::string big(3 << 20, 'x');
    message.setBody(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(big.data()), big.size()));
    std::vector<std::byte> bytes;
    append_frame(scratch.builder(), bytes);
    PipeFeed feed(bytes);
    FdFrameReader reader(feed.read_fd, nullptr);
    Frame frame;
    ASSERT_EQ(reader.next(Wait::yes, frame), Next::frame);
    EXPECT_EQ(frame.byte_count(), bytes.size());
}

TEST(FdFrameReader, ReportsATruncatedStreamWithItsOffset) {
    auto one = make_frame("a", 1);
    auto stream = one;
    stream.insert(stream.end(), one.begin(), one.end() - 8);
    PipeFeed feed(stream);
    FdFrameReader reader(feed.read_fd, nullptr);
    Frame frame;
    EXPECT_EQ(reader.next(Wait::yes, frame), Next::frame);
    EXPECT_EQ(reader.next(Wait::yes, frame), Next::broken);
    EXPECT_NE(reader.error().find("truncated frame at byte " + std::to_string(one.size())), std::string::npos)
        << reader.error();
}

TEST(FdFrameReader, ReportsGarbageAndOversizedFrames) {
    {
        std::string text = "{\"source\":\"not frames\"}\n";
        PipeFeed feed(std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                             reinterpret_cast<const std::byte*>(text.data() + text.size())));
        FdFrameReader reader(feed.read_fd, nullptr);
        Frame frame;
        EXPECT_EQ(reader.next(Wait::yes, frame), Next::broken);
        EXPECT_NE(reader.error().find("garbage at byte 0"), std::string::npos) << reader.error();
    }
    {
        PipeFeed feed(make_frame("a", 1));
        FdFrameReader reader(feed.read_fd, nullptr, {.max_frame_bytes = 64});
        Frame frame;
        EXPECT_EQ(reader.next(Wait::yes, frame), Next::broken);
        EXPECT_NE(reader.error().find("over the limit of 64"), std::string::npos) << reader.error();
    }
}

TEST(FdFrameReader, SaysIdleInsteadOfBlocking) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    FdFrameReader reader(fds[0], nullptr);
    Frame frame;
    EXPECT_EQ(reader.next(Wait::no, frame), Next::idle);
    auto one = make_frame("a", 1);
    ASSERT_EQ(::write(fds[1], one.data(), one.size()), static_cast<ssize_t>(one.size()));
    EXPECT_EQ(reader.next(Wait::no, frame), Next::frame);
    ::close(fds[1]);
    EXPECT_EQ(reader.next(Wait::no, frame), Next::end);
    ::close(fds[0]);
}

TEST(FdFrameReader, EndsOnAStopRequestAfterWhatItAlreadyHolds) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    StopFlag stop{false};
    FdFrameReader reader(fds[0], &stop);
    auto one = make_frame("a", 1);
    std::vector<std::byte> two = one;
    two.insert(two.end(), one.begin(), one.end());
    two.insert(two.end(), one.begin(), one.begin() + 8);  // and the start of a third
    ASSERT_EQ(::write(fds[1], two.data(), two.size()), static_cast<ssize_t>(two.size()));
    Frame frame;
    ASSERT_EQ(reader.next(Wait::yes, frame), Next::frame);
    stop = true;
    EXPECT_EQ(reader.next(Wait::yes, frame), Next::frame);  // already read: not lost
    EXPECT_EQ(reader.next(Wait::yes, frame), Next::end);    // the partial third is not an error
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST(FdOutput, WritesFramesUnchanged) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    auto one = make_frame("a", 1);
    {
        FdFrameWriter writer(fds[1]);
        std::vector<capnp::word> aligned(one.size() / 8);
        std::memcpy(aligned.data(), one.data(), one.size());
        writer.write(Frame{aligned.data(), aligned.size()});
        writer.flush();
    }
    std::vector<std::byte> got(one.size());
    ASSERT_EQ(::read(fds[0], got.data(), got.size()), static_cast<ssize_t>(got.size()));
    EXPECT_EQ(got, one);
    ::close(fds[0]);
    ::close(fds[1]);
}
