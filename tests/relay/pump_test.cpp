// The pump: tee to every sink, garbled frames counted and set aside, flush on idle,
// and a broken input that still delivers everything before the break.
#include "core/error.h"
#include "message/scratch_builder.h"
#include "relay/pump.h"

#include "support/support.h"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>

using namespace mh;
using namespace mh::wire;

namespace {

std::vector<capnp::word> make_frame(int64_t time) {
    ScratchBuilder scratch;
    scratch.start().setTime(time);
    auto words = test::frame_words(scratch.builder());
    return words;
}

// A scripted source: frames, idles and an ending, in order.
class ScriptedSource final : public FrameSource {
public:
    struct Step {
        Next next;
        std::vector<capnp::word> words;
    };
    std::deque<Step> steps;
    Next next(Wait wait, Frame& frame) override {
        while (!steps.empty() && steps.front().next == Next::idle && wait == Wait::yes) steps.pop_front();
        if (steps.empty()) return Next::end;
        m_current = std::move(steps.front());
        steps.pop_front();
        frame = {m_current.words.data(), m_current.words.size()};
        return m_current.next;
    }
    std::string error() const override { return "input broke here"; }

private:
    Step m_current;
};

class CollectSink final : public FrameSink {
public:
    std::vector<int64_t> pending, delivered;
    int flushes = 0;
    void write(const Frame& frame) override {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
        pending.push_back(reader.getRoot<schema::Message>().getTime());
    }
    void flush() override {
        ++flushes;
        delivered.insert(delivered.end(), pending.begin(), pending.end());
        pending.clear();
    }
};

struct Fixture {
    metrics::Registry registry;
    relay::FlowCounters counters{registry};
    Log log{"test", LogLevel::error};
};

}  // namespace

TEST(Pump, TeesEveryFrameToEverySink) {
    Fixture f;
    ScriptedSource source;
    for (int i = 0; i < 5; ++i) source.steps.push_back({Next::frame, make_frame(i)});
    CollectSink a, b;
    FrameSink* sinks[] = {&a, &b};
    auto result = relay::pump(source, sinks, f.counters, {}, f.log);
    EXPECT_EQ(result.messages, 5u);
    EXPECT_EQ(a.delivered, (std::vector<int64_t>{0, 1, 2, 3, 4}));
    EXPECT_EQ(b.delivered, a.delivered);
    EXPECT_EQ(f.counters.messages_in.value(), 5u);
    EXPECT_EQ(f.counters.messages_out.value(), 5u);
}

TEST(Pump, FlushesWhenTheInputGoesIdle) {
    Fixture f;
    ScriptedSource source;
    source.steps.push_back({Next::frame, make_frame(1)});
    source.steps.push_back({Next::idle, {}});
    source.steps.push_back({Next::frame, make_frame(2)});
    CollectSink sink;
    FrameSink* sinks[] = {&sink};
    relay::pump(source, sinks, f.counters, {}, f.log);
    EXPECT_EQ(sink.flushes, 2);  // once at the idle, once at the end
    EXPECT_EQ(sink.delivered, (std::vector<int64_t>{1, 2}));
}

TEST(Pump, SetsGarbledFramesAsideAndCountsThem) {
    Fixture f;
    ScriptedSource source;
    auto bad = make_frame(99);
    reinterpret_cast<uint32_t*>(bad.data() + 1)[0] = 0x00fffff0;  // root pointer out of bounds
    source.steps.push_back({Next::frame, make_frame(1)});
    source.steps.push_back({Next::frame, bad});
    source.steps.push_back({Next::frame, make_frame(2)});
    CollectSink sink;
    std::vector<int> dead;
    struct DeadLetter final : FrameSink {
        int count = 0;
        void write(const Frame&) override { ++count; }
        void flush() override {}
    } dead_letter;
    FrameSink* sinks[] = {&sink};
    relay::PumpOptions options;
    options.dead_letter = &dead_letter;
    auto result = relay::pump(source, sinks, f.counters, options, f.log);
    EXPECT_EQ(sink.delivered, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(result.garbled, 1u);
    EXPECT_EQ(dead_letter.count, 1);
    EXPECT_EQ(f.counters.dropped_malformed.value(), 1u);
}

TEST(Pump, StopsAfterMaxMessages) {
    Fixture f;
    ScriptedSource source;
    for (int i = 0; i < 10; ++i) source.steps.push_back({Next::frame, make_frame(i)});
    CollectSink sink;
    FrameSink* sinks[] = {&sink};
    relay::PumpOptions options;
    options.max_messages = 3;
    relay::pump(source, sinks, f.counters, options, f.log);
    EXPECT_EQ(sink.delivered.size(), 3u);
}

TEST(Pump, DeliversWhatCameBeforeABrokenInputThenFails) {
    Fixture f;
    ScriptedSource source;
    source.steps.push_back({Next::frame, make_frame(1)});
    source.steps.push_back({Next::broken, {}});
    CollectSink sink;
    FrameSink* sinks[] = {&sink};
    try {
        relay::pump(source, sinks, f.counters, {}, f.log);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::data);
        EXPECT_STREQ(e.what(), "input broke here");
    }
    EXPECT_EQ(sink.delivered, (std::vector<int64_t>{1}));
    EXPECT_EQ(f.counters.errors.value(), 1u);
}

TEST(Pump, AFloodOfGarbledFramesIsLoggedSparingly) {
    metrics::Registry registry;
    relay::FlowCounters counters(registry);
    Log log("test", LogLevel::warn);
    ScriptedSource source;
    auto bad = make_frame(1);
    reinterpret_cast<uint32_t*>(bad.data() + 1)[0] = 0x00fffff0;
    for (int i = 0; i < 1000; ++i) source.steps.push_back({Next::frame, bad});
    CollectSink sink;
    FrameSink* sinks[] = {&sink};
    testing::internal::CaptureStderr();
    auto result = relay::pump(source, sinks, counters, {}, log);
    std::string logged = testing::internal::GetCapturedStderr();
    EXPECT_EQ(result.garbled, 1000u);
    EXPECT_EQ(counters.dropped_malformed.value(), 1000u);
    // The first ten, then the 100th and the 1000th.
    EXPECT_EQ(std::count(logged.begin(), logged.end(), '\n'), 12);
    EXPECT_NE(logged.find("(1000 so far)"), std::string::npos);
}
