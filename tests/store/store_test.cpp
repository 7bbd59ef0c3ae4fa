// mh-store's LMDB store, used as a program would: generated telemetry appended into a real
// LMDB directory under a temporary directory, then queried, inspected, checked and damaged.
#include "core/error.h"
#include "gen/gen.h"
#include "message/scratch_builder.h"
#include "message/time.h"
#include "store/append.h"
#include "store/layout.h"
#include "store/store.h"
#include "store/store_tool.h"

#include "support/support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <filesystem>
#include <thread>

using namespace mh;
using namespace mh::store;

namespace {

// A fresh directory for one test's store, removed afterwards.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "mh-store-test.XXXXXX").string();
        m_path = ::mkdtemp(pattern.data());
    }
    ~TempDir() { std::filesystem::remove_all(m_path); }
    std::string db() const { return m_path + "/db"; }

private:
    std::string m_path;
};

// One stored or generated frame, owned and word aligned.
struct OwnedFrame {
    std::vector<capnp::word> words;

    explicit OwnedFrame(const wire::Frame& frame) : words(frame.words, frame.words + frame.word_count) {}
    wire::Frame frame() const { return {words.data(), words.size()}; }
    std::vector<std::byte> bytes() const {
        auto span = frame().bytes();
        return {span.begin(), span.end()};
    }
    int64_t time() const { return message().time; }
    std::string source() const { return message().source; }
    std::optional<double> field(std::string_view name) const {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
        for (auto f : reader.getRoot<schema::Message>().getFields())
            if (std::string_view(f.getName().cStr()) == name && f.getValue().isFloat()) return f.getValue().getFloat();
        return std::nullopt;
    }

private:
    struct Header {
        int64_t time;
        std::string source;
    };
    Header message() const {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
        auto root = reader.getRoot<schema::Message>();
        return {root.getTime(), root.getSource().cStr()};
    }
};

// mh-gen's telemetry: `count` messages from `sources` sensors, reproducible.
std::vector<OwnedFrame> generate(uint64_t count, uint64_t sources = 10, uint64_t seed = 4) {
    gen::GenOptions options;
    options.count = count;
    options.sources = sources;
    options.seed = seed;
    gen::GenSource source(gen::resolve(options));
    std::vector<OwnedFrame> frames;
    wire::Frame frame;
    while (source.next(wire::Wait::yes, frame) == wire::Next::frame) frames.emplace_back(frame);
    return frames;
}

OwnedFrame make_message(std::optional<MessageId> id, int64_t time, const std::string& source) {
    ScratchBuilder scratch;
    auto message = scratch.start();
    if (id) message.setId(kj::arrayPtr(id->data(), id->size()));
    message.setTime(time);
    message.setSource(source);
    auto words = test::frame_words(scratch.builder());
    return OwnedFrame(wire::Frame{words.data(), words.size()});
}

OwnedFrame make_barrier(uint64_t number) {
    ScratchBuilder scratch;
    scratch.start().getControl().initBarrier().setNumber(number);
    auto words = test::frame_words(scratch.builder());
    return OwnedFrame(wire::Frame{words.data(), words.size()});
}

// Frames from a list, as a pipe would deliver them.
class ListSource final : public wire::FrameSource {
public:
    explicit ListSource(const std::vector<OwnedFrame>& frames) : m_frames(frames) {}
    wire::Next next(wire::Wait, wire::Frame& frame) override {
        if (m_next == m_frames.size()) return wire::Next::end;
        frame = m_frames[m_next++].frame();
        return wire::Next::frame;
    }

private:
    const std::vector<OwnedFrame>& m_frames;
    size_t m_next = 0;
};

class CollectSink final : public wire::FrameSink {
public:
    std::vector<OwnedFrame> frames;
    void write(const wire::Frame& frame) override { frames.emplace_back(frame); }
    void flush() override {}
};

StoreConfig writable() {
    StoreConfig config;
    config.access = Access::read_write;
    config.create = Create::yes;
    config.sync = Sync::none;  // tests check logic, not the disk
    return config;
}

AppendCounts append_all(Store& store, const std::vector<OwnedFrame>& frames, AppendOptions options = {}) {
    Log log("test", LogLevel::error);
    ListSource source(frames);
    return append(source, store, options, log);
}

std::vector<OwnedFrame> query_all(Store& store, Query query = {}, QueryResult* result = nullptr) {
    CollectSink sink;
    QueryResult r = store.query(query, sink);
    if (result) *result = r;
    return std::move(sink.frames);
}

std::vector<std::vector<std::byte>> bytes_of(const std::vector<OwnedFrame>& frames) {
    std::vector<std::vector<std::byte>> out;
    for (const auto& f : frames) out.push_back(f.bytes());
    return out;
}

// What a time-ordered query must return: the frames ordered by (time, id).
std::vector<OwnedFrame> by_time(std::vector<OwnedFrame> frames) {
    std::stable_sort(frames.begin(), frames.end(), [](const OwnedFrame& a, const OwnedFrame& b) {
        return a.time() < b.time();
    });
    return frames;
}

}  // namespace

TEST(Store, AppendThenQueryGivesBackTheSameFramesByteForByte) {
    TempDir dir;
    auto frames = generate(5000);
    Store store(dir.db(), writable());
    AppendCounts counts = append_all(store, frames);
    EXPECT_EQ(counts.stored, 5000u);
    EXPECT_EQ(counts.duplicates, 0u);

    EXPECT_EQ(bytes_of(query_all(store)), bytes_of(by_time(frames)));
    Stats stats = store.stat();
    EXPECT_EQ(stats.messages, 5000u);
    EXPECT_EQ(stats.sources, 10u);
    EXPECT_EQ(stats.first_ns, frames.front().time());
    EXPECT_EQ(stats.last_ns, frames.back().time());
    ASSERT_EQ(stats.top_sources.size(), 10u);
    EXPECT_EQ(stats.top_sources[0].messages, 500u);
}

TEST(Store, ReplayedIdsAreSkippedAndCounted) {
    TempDir dir;
    auto frames = generate(3000);
    Store store(dir.db(), writable());
    append_all(store, frames);
    AppendCounts replay = append_all(store, frames);
    EXPECT_EQ(replay.stored, 0u);
    EXPECT_EQ(replay.duplicates, 3000u);
    EXPECT_EQ(store.stat().messages, 3000u);
    EXPECT_TRUE(store.check().sound());
}

TEST(Store, TimeSourceAndWhereQueriesAgreeWithFilteringTheInput) {
    TempDir dir;
    auto frames = generate(4000);
    Store store(dir.db(), writable());
    append_all(store, frames);
    auto sorted = by_time(frames);

    Query query;
    query.from_ns = sorted[1000].time();
    query.to_ns = sorted[3000].time();
    std::vector<OwnedFrame> expected;
    for (const auto& f : sorted)
        if (f.time() >= query.from_ns && f.time() < query.to_ns) expected.push_back(f);
    EXPECT_EQ(bytes_of(query_all(store, query)), bytes_of(expected));

    query.source = "sensor-000007";
    expected.clear();
    for (const auto& f : sorted)
        if (f.time() >= query.from_ns && f.time() < query.to_ns && f.source() == "sensor-000007")
            expected.push_back(f);
    EXPECT_EQ(expected.size(), 200u);
    EXPECT_EQ(bytes_of(query_all(store, query)), bytes_of(expected));

    expr::Symbols symbols;
    auto where = std::get<expr::Expression>(expr::Expression::compile("temperature > 22.5", symbols));
    Query filtered;
    filtered.symbols = &symbols;
    filtered.where = &where;
    expected.clear();
    for (const auto& f : sorted)
        if (f.field("temperature").value_or(-1e9) > 22.5) expected.push_back(f);
    ASSERT_GT(expected.size(), 0u);
    ASSERT_LT(expected.size(), sorted.size());
    EXPECT_EQ(bytes_of(query_all(store, filtered)), bytes_of(expected));

    filtered.limit = 7;
    expected.erase(expected.begin() + 7, expected.end());
    EXPECT_EQ(bytes_of(query_all(store, filtered)), bytes_of(expected));
}

TEST(Store, SourceQueryReadsOnlyThatSourcesEntries) {
    TempDir dir;
    auto frames = generate(5000, 1000);
    Store store(dir.db(), writable());
    append_all(store, frames);
    EXPECT_EQ(store.stat().sources, 1000u);

    Query query;
    query.source = "sensor-000123";
    QueryResult result;
    auto found = query_all(store, query, &result);
    EXPECT_EQ(found.size(), 5u);
    EXPECT_EQ(result.entries_read, 5u);  // not 5000: the other 999 sources are never touched
    for (const auto& f : found) EXPECT_EQ(f.source(), "sensor-000123");

    query.source = "no-such-source";
    EXPECT_TRUE(query_all(store, query, &result).empty());
    EXPECT_EQ(result.entries_read, 0u);
}

TEST(Store, MessagesWithoutAnIdAreRefused) {
    TempDir dir;
    Store store(dir.db(), writable());
    std::vector<OwnedFrame> frames;
    frames.push_back(make_message(std::nullopt, 1, "s1"));
    frames.push_back(make_message(MessageId{1}, 2, "s1"));
    frames.push_back(make_message(MessageId{2}, 3, ""));  // an empty source is a source too
    AppendCounts counts = append_all(store, frames);
    EXPECT_EQ(counts.no_id, 1u);
    EXPECT_EQ(counts.stored, 2u);
    Query query;
    query.source = "";
    EXPECT_EQ(query_all(store, query).size(), 1u);
    EXPECT_TRUE(store.check().sound());
}

TEST(Store, TheMapGrowsFromATinyInitialSize) {
    TempDir dir;
    StoreConfig config = writable();
    config.initial_map_bytes = k_min_map_bytes;
    auto frames = generate(20000);
    Store store(dir.db(), config);
    AppendCounts counts = append_all(store, frames);
    EXPECT_EQ(counts.stored, 20000u);
    EXPECT_GT(store.map_bytes(), k_min_map_bytes * 16);
    EXPECT_EQ(bytes_of(query_all(store)), bytes_of(by_time(frames)));
    EXPECT_TRUE(store.check().sound());
}

TEST(Store, AFullStoreStopsWithAnIoErrorAndKeepsWhatWasCommitted) {
    TempDir dir;
    StoreConfig config = writable();
    config.initial_map_bytes = k_min_map_bytes;
    config.max_map_bytes = size_t{1} << 20;
    auto frames = generate(20000);
    uint64_t committed = 0;
    {
        Store store(dir.db(), config);
        AppendOptions options;
        options.batch_messages = 100;
        options.linger_ns = int64_t{3600} * 1'000'000'000;  // only full batches, however loaded the machine
        try {
            append_all(store, frames, options);
            FAIL() << "20000 messages do not fit in 1 MiB";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ExitCode::io);
            EXPECT_NE(std::string(e.what()).find("is full"), std::string::npos) << e.what();
        }
        committed = store.stat().messages;
    }
    EXPECT_GT(committed, 0u);
    EXPECT_EQ(committed % 100, 0u);  // whole batches or nothing

    Store reopened(dir.db(), StoreConfig{});
    EXPECT_EQ(reopened.stat().messages, committed);
    EXPECT_TRUE(reopened.check().sound());
    std::vector<OwnedFrame> prefix(frames.begin(), frames.begin() + static_cast<ptrdiff_t>(committed));
    EXPECT_EQ(bytes_of(query_all(reopened)), bytes_of(by_time(prefix)));
}

TEST(Store, ABarrierIsConfirmedOnlyAfterEverythingBeforeItIsCommitted) {
    TempDir dir;
    Store store(dir.db(), writable());
    auto messages = generate(300);
    std::vector<OwnedFrame> input(messages.begin(), messages.begin() + 200);
    input.push_back(make_barrier(7));
    input.insert(input.end(), messages.begin() + 200, messages.end());

    // The confirmation output looks into the store the moment the barrier reaches it.
    struct ConfirmSink final : wire::FrameSink {
        Store& store;
        std::vector<uint64_t> stored_when_confirmed;
        std::vector<uint64_t> numbers;
        explicit ConfirmSink(Store& s) : store(s) {}
        void write(const wire::Frame& frame) override {
            stored_when_confirmed.push_back(store.stat().messages);
            capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
            numbers.push_back(reader.getRoot<schema::Message>().getControl().getBarrier().getNumber());
        }
        void flush() override {}
    } confirm(store);

    AppendOptions options;
    options.confirm = &confirm;
    options.batch_messages = 4096;  // the barrier, not a full batch, forces the commit
    AppendCounts counts = append_all(store, input, options);
    EXPECT_EQ(counts.barriers, 1u);
    EXPECT_EQ(counts.stored, 300u);  // the barrier itself is not stored
    EXPECT_EQ(confirm.numbers, std::vector<uint64_t>{7});
    EXPECT_EQ(confirm.stored_when_confirmed, std::vector<uint64_t>{200});
}

TEST(Store, ReadersSeeWholeCommitsWhileAWriterGoesOn) {
    TempDir dir;
    Store store(dir.db(), writable());
    auto frames = generate(20000);
    auto expected = bytes_of(frames);  // ids and times rise together: time order is input order

    std::atomic<bool> done{false};
    std::thread writer([&] {
        AppendOptions options;
        options.batch_messages = 500;
        options.linger_ns = int64_t{3600} * 1'000'000'000;  // only full batches: commits of exactly 500
        append_all(store, frames, options);
        done = true;
    });
    size_t last = 0, snapshots = 0;
    while (!done || last < frames.size()) {
        auto seen = bytes_of(query_all(store));
        ASSERT_GE(seen.size(), last);
        ASSERT_EQ(seen.size() % 500, 0u);
        ASSERT_TRUE(std::equal(seen.begin(), seen.end(), expected.begin()));
        last = seen.size();
        ++snapshots;
    }
    writer.join();
    EXPECT_GT(snapshots, 1u);
}

TEST(Store, CheckFindsASoundStoreSoundAndADamagedOneNot) {
    TempDir dir;
    auto frames = generate(1000);
    {
        Store store(dir.db(), writable());
        append_all(store, frames);
        CheckReport report = store.check();
        EXPECT_TRUE(report.sound()) << (report.details.empty() ? "" : report.details[0]);
        EXPECT_EQ(report.messages, 1000u);

        // Damage it through LMDB directly: one time-index entry gone, and a source-index entry
        // for message 10 (of sensor-000001) filed under another source with another time.
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frames[10].words.data(), frames[10].words.size()));
        auto message = reader.getRoot<schema::Message>();
        auto id = message.getId();
        TimeKey key = time_key(message.getTime(), std::span(id.begin(), id.size()));
        Txn txn(store.env(), Txn::Kind::write);
        EXPECT_TRUE(txn.del(store.tables().by_time, std::as_bytes(std::span(key))));
        TimeKey wrong = time_key(message.getTime() + 1, std::span(id.begin(), id.size()));
        txn.put(store.tables().by_source, as_bytes(source_key("sensor-000002")), std::as_bytes(std::span(wrong)));
        txn.commit();
    }
    Store store(dir.db(), StoreConfig{});
    CheckReport report = store.check();
    EXPECT_FALSE(report.sound());
    EXPECT_EQ(report.problems, 4u);  // a wrong time, a wrong source, two counts off
    std::string all;
    for (const auto& line : report.details) all += line + "\n";
    EXPECT_NE(all.find("by_time has 999 entries for 1000 messages"), std::string::npos) << all;
    EXPECT_NE(all.find("by_source has 1001 entries"), std::string::npos) << all;
}

TEST(Store, OpeningAMissingStoreForReadingSaysWhatToDo) {
    TempDir dir;
    try {
        Store store(dir.db(), StoreConfig{});
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::io);
        EXPECT_NE(std::string(e.what()).find("no store at"), std::string::npos) << e.what();
    }
}

TEST(StoreTool, QueryTimesAreAbsoluteOrRelativeToNow) {
    const int64_t now = 1'767'225'600'000'000'000;
    EXPECT_EQ(parse_query_time("-1h", now), now - 3600 * k_ns_per_second);
    EXPECT_EQ(parse_query_time("+90s", now), now + 90 * k_ns_per_second);
    EXPECT_EQ(parse_query_time("now", now), now);
    EXPECT_EQ(parse_query_time("2026-01-01T00:00:00Z", 0), now);
    EXPECT_EQ(parse_query_time("123", 0), 123);
    EXPECT_FALSE(parse_query_time("-soon", now));
    EXPECT_EQ(parse_size("64M"), uint64_t{64} << 20);
    EXPECT_EQ(parse_size("4096"), 4096u);
    EXPECT_FALSE(parse_size("12X"));
}

TEST(StoreLayout, TimeKeysSortNumerically) {
    MessageId id{};
    auto a = time_key(-5, id), b = time_key(0, id), c = time_key(7, id);
    EXPECT_LT(a, b);
    EXPECT_LT(b, c);
    EXPECT_EQ(decode_time(a.data()), -5);
    EXPECT_EQ(decode_time(c.data()), 7);
}

TEST(Store, RetainDeletesTheOldestByAgeAndBySizeAndStaysSound) {
    TempDir dir;
    Store store(dir.db(), writable());
    auto frames = by_time(generate(25000));  // more than one retain transaction's worth
    append_all(store, frames);

    // By age: keep what is younger than a cutoff in the middle of the data.
    int64_t cutoff = frames[15000].time();
    Retention by_age;
    by_age.now_ns = cutoff + 1000;
    by_age.max_age_ns = 1000;
    RetainResult aged = store.retain(by_age);
    std::vector<OwnedFrame> younger;
    for (const auto& f : frames)
        if (f.time() >= cutoff) younger.push_back(f);
    EXPECT_EQ(aged.deleted, frames.size() - younger.size());
    EXPECT_EQ(bytes_of(query_all(store)), bytes_of(younger));
    EXPECT_TRUE(store.check().sound());

    // By size: the oldest go until the frames fit.
    uint64_t limit = store.stat().bytes / 2;
    RetainResult trimmed = store.retain({std::nullopt, limit, 0});
    Stats stats = store.stat();
    EXPECT_LE(stats.bytes, limit);
    EXPECT_EQ(stats.messages, younger.size() - trimmed.deleted);
    auto kept = query_all(store);
    ASSERT_FALSE(kept.empty());
    EXPECT_EQ(bytes_of(kept), bytes_of(std::vector<OwnedFrame>(younger.end() - static_cast<long>(kept.size()),
                                                               younger.end())));
    EXPECT_TRUE(store.check().sound());
    // Nothing left to do: a second pass deletes nothing.
    EXPECT_EQ(store.retain({std::nullopt, limit, 0}).deleted, 0u);
}

TEST(Store, OutOfOrderIdsAndTimesAndDuplicatesInOneBatchAreStoredRight) {
    // Appends take the MDB_APPEND path for keys after the last; everything else must still
    // go through the search: older ids, earlier times, and the same id twice in a batch.
    TempDir dir;
    Store store(dir.db(), writable());
    auto id = [](uint8_t n) {
        MessageId id{};
        id[0] = 0x01;
        id[15] = n;
        return id;
    };
    std::vector<OwnedFrame> first = {make_message(id(10), 1000, "b"), make_message(id(20), 2000, "a")};
    std::vector<OwnedFrame> second = {make_message(id(30), 500, "a"),  make_message(id(5), 3000, "c"),
                                      make_message(id(30), 500, "a"),  make_message(id(15), 1500, "b"),
                                      make_message(id(40), 4000, "b"), make_message(id(20), 2000, "a")};
    append_all(store, first);
    AppendCounts counts = append_all(store, second);
    EXPECT_EQ(counts.stored, 4u);
    EXPECT_EQ(counts.duplicates, 2u);
    EXPECT_TRUE(store.check().sound());
    std::vector<int64_t> times;
    for (const auto& frame : query_all(store)) times.push_back(frame.time());
    EXPECT_EQ(times, (std::vector<int64_t>{500, 1000, 1500, 2000, 3000, 4000}));
    Query by_b;
    by_b.source = "b";
    times.clear();
    for (const auto& frame : query_all(store, by_b)) times.push_back(frame.time());
    EXPECT_EQ(times, (std::vector<int64_t>{1000, 1500, 4000}));
    std::vector<MessageId> ids;
    store.scan_ids(std::nullopt, 100, [&](const wire::Frame& frame) {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
        MessageId got;
        std::memcpy(got.data(), reader.getRoot<schema::Message>().getId().begin(), got.size());
        ids.push_back(got);
    });
    EXPECT_EQ(ids, (std::vector<MessageId>{id(5), id(10), id(15), id(20), id(30), id(40)}));
}

TEST(Store, AGarbledFrameIsRefusedAndTheRestIsStored) {
    auto frames = generate(3);
    // The root pointer (the word after the segment table) aimed far outside the segment.
    std::vector<capnp::word> words = frames[1].words;
    uint32_t far_offset = 0x0ffffff0u << 2;
    std::memcpy(reinterpret_cast<std::byte*>(words.data()) + 8, &far_offset, sizeof(far_offset));
    Batch batch;
    EXPECT_TRUE(std::holds_alternative<Added>(batch.add(frames[0].frame(), {})));
    auto refused = batch.add(wire::Frame{words.data(), words.size()}, {});
    ASSERT_TRUE(std::holds_alternative<Refused>(refused));
    EXPECT_EQ(std::get<Refused>(refused).reason, Refusal::garbled);
    EXPECT_TRUE(std::holds_alternative<Added>(batch.add(frames[2].frame(), {})));
    EXPECT_EQ(batch.size(), 2u);

    TempDir dir;
    Store store(dir.db(), writable());
    EXPECT_EQ(store.commit(batch).stored, 2u);
    EXPECT_TRUE(store.check().sound());
}
