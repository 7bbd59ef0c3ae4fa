// Frames across ZeroMQ: batches of frames per message, word alignment, back-pressure
// and a peer's garbage rejected without ending the stream.
#include "core/error.h"
#include "message/scratch_builder.h"
#include "zmq/socket.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>

using namespace mh;
using namespace mh::zmq;

namespace {
Endpoint endpoint(std::string_view spec, Direction direction) { return std::get<Endpoint>(parse_endpoint(spec, direction)); }

struct OwnedFrame {
    std::vector<capnp::word> words;
    wire::Frame frame() const { return {words.data(), words.size()}; }
};

OwnedFrame make_frame(int64_t time) {
    ScratchBuilder scratch;
    auto message = scratch.start();
    message.setTime(time);
    message.setSource("sensor-1");
    std::vector<std::byte> bytes;
    wire::append_frame(scratch.builder(), bytes);
    OwnedFrame owned{std::vector<capnp::word>(bytes.size() / 8)};
    std::memcpy(owned.words.data(), bytes.data(), bytes.size());
    return owned;
}

int64_t time_of(const wire::Frame& frame) {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
    return reader.getRoot<schema::Message>().getTime();
}
}  // namespace

TEST(ZmqTransport, CarriesFramesInOrderInBatches) {
    Context context;
    ZmqFrameReader reader(context, endpoint("@inproc://hop", Direction::in), nullptr);
    ZmqFrameWriter writer(context, endpoint(">inproc://hop", Direction::out));
    constexpr int k_count = 20000;  // several batches
    std::thread producer([&] {
        for (int i = 0; i < k_count; ++i) writer.write(make_frame(i).frame());
        writer.flush();
    });
    wire::Frame frame;
    for (int i = 0; i < k_count; ++i) {
        ASSERT_EQ(reader.next(wire::Wait::yes, frame), wire::Next::frame);
        ASSERT_EQ(reinterpret_cast<uintptr_t>(frame.words) % 8, 0u);
        ASSERT_EQ(time_of(frame), i);
    }
    producer.join();
    EXPECT_EQ(reader.next(wire::Wait::no, frame), wire::Next::idle);
}

TEST(ZmqTransport, RejectsABatchThatIsNotWholeFramesAndGoesOn) {
    Context context;
    ZmqFrameReader reader(context, endpoint("@inproc://bad", Direction::in), nullptr);
    Socket raw(context, endpoint(">inproc://bad", Direction::out));
    const char garbage[] = "definitely not a frame";
    ASSERT_GE(zmq_send(raw.get(), garbage, sizeof(garbage), 0), 0);
    ZmqFrameWriter writer(context, endpoint(">inproc://bad", Direction::out));
    writer.write(make_frame(42).frame());
    writer.flush();

    wire::Frame frame;
    ASSERT_EQ(reader.next(wire::Wait::yes, frame), wire::Next::frame);
    EXPECT_EQ(time_of(frame), 42);
    EXPECT_EQ(reader.rejected(), 1u);
    EXPECT_NE(reader.error().find("not whole frames"), std::string::npos);
}

TEST(ZmqTransport, AlignsMisalignedBatchesBeforeReading) {
    Context context;
    ZmqFrameReader reader(context, endpoint("@inproc://odd", Direction::in), nullptr);
    Socket raw(context, endpoint(">inproc://odd", Direction::out));
    auto one = make_frame(7);
    // Build the message from a deliberately odd address; ZeroMQ copies, and may hand
    // us any alignment: the reader must cope either way.
    std::vector<char> odd(one.words.size() * 8 + 1);
    std::memcpy(odd.data() + 1, one.words.data(), one.words.size() * 8);
    ASSERT_GE(zmq_send(raw.get(), odd.data() + 1, one.words.size() * 8, 0), 0);
    wire::Frame frame;
    ASSERT_EQ(reader.next(wire::Wait::yes, frame), wire::Next::frame);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(frame.words) % 8, 0u);
    EXPECT_EQ(time_of(frame), 7);
}

TEST(ZmqTransport, ReaderEndsOnStopRequest) {
    Context context;
    StopFlag stop{true};
    ZmqFrameReader reader(context, endpoint("@inproc://stop", Direction::in), &stop);
    wire::Frame frame;
    EXPECT_EQ(reader.next(wire::Wait::yes, frame), wire::Next::end);
}

TEST(ZmqTransport, BindFailureIsAClearError) {
    Context context;
    ZmqFrameReader first(context, endpoint("@tcp://127.0.0.1:0", Direction::in), nullptr);
    try {
        ZmqFrameReader second(context, endpoint("@ipc:///nonexistent-dir/x/y", Direction::in), nullptr);
        FAIL() << "bind to a missing directory succeeded";
    } catch (const mh::Error& e) {
        EXPECT_EQ(e.code(), mh::ExitCode::unavailable);
        EXPECT_NE(std::string(e.what()).find("cannot bind ipc:///nonexistent-dir/x/y"), std::string::npos);
    }
}
