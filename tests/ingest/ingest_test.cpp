// Foreign records -> messages: the mapping options over mh-cat's JSON mapping, the records
// inside an API's response, and CSV lines as JSON objects.
#include "ingest/mapping.h"
#include "ingest/records.h"
#include "message/time.h"
#include "support/support.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace mh;
using namespace mh::ingest;

constexpr int64_t k_now = 1'764'170'442'000'000'000;

// A mapped record, read back.
struct Mapped {
    std::vector<capnp::word> words;
    std::optional<capnp::FlatArrayMessageReader> reader;
    schema::Message::Reader message;

    std::string source() const { return message.getSource().cStr(); }
    std::string kind() const { return message.getKind().cStr(); }
    std::vector<std::string> field_names() const {
        std::vector<std::string> names;
        for (auto field : message.getFields()) names.emplace_back(field.getName().cStr());
        return names;
    }
};

std::optional<std::string> map_into(Mapper& mapper, std::string_view json, Mapped& mapped, RecordHints hints = {}) {
    std::vector<std::byte> frame;
    if (auto reason = mapper.map(json, hints, k_now, frame, wire::k_default_max_frame_bytes)) return reason;
    mapped.words = test::to_words(frame);
    mapped.reader.emplace(kj::arrayPtr(mapped.words.data(), mapped.words.size()));
    mapped.message = mapped.reader->getRoot<schema::Message>();
    return std::nullopt;
}

TEST(Mapper, WithoutOptionsItIsMhCatsMappingPlusAnIdAndIngestionTime) {
    Mapper mapper({}, 1);
    Mapped m;
    ASSERT_FALSE(map_into(mapper, R"({"source":"s1","kind":"telemetry","temperature":21.5,"motor":{"rpm":1200}})", m));
    EXPECT_EQ(m.source(), "s1");
    EXPECT_EQ(m.kind(), "telemetry");
    EXPECT_EQ(m.message.getId().size(), 16u);
    EXPECT_EQ(m.message.getIngested(), k_now);
    EXPECT_EQ(m.message.getTime(), k_now);  // no event time: when it came
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"temperature", "motor.rpm"}));
    EXPECT_DOUBLE_EQ(m.message.getFields()[0].getValue().getFloat(), 21.5);
    EXPECT_EQ(m.message.getFields()[1].getValue().getInt(), 1200);
}

TEST(Mapper, KeepsTheRecordsOwnIdTimeAndIngestedButDropsItsGateway) {
    Mapper mapper({}, 1);
    Mapped m;
    ASSERT_FALSE(map_into(mapper,
                          R"({"id":"0190a6b2-0000-7000-8000-000000000001","time":5,"ingested":7,"gateway":"forged"})",
                          m));
    EXPECT_EQ(m.message.getTime(), 5);
    EXPECT_EQ(m.message.getIngested(), 7);
    EXPECT_EQ(static_cast<uint8_t>(m.message.getId()[15]), 1);
    EXPECT_FALSE(m.message.hasGateway());
}

TEST(Mapper, IdsAreNewAndIncreasingForRecordsWithout) {
    Mapper mapper({}, 1);
    Mapped a, b;
    ASSERT_FALSE(map_into(mapper, R"({"x":1})", a));
    ASSERT_FALSE(map_into(mapper, R"({"x":1})", b));
    auto ia = a.message.getId(), ib = b.message.getId();
    EXPECT_LT(std::string(reinterpret_cast<const char*>(ia.begin()), 16),
              std::string(reinterpret_cast<const char*>(ib.begin()), 16));
}

TEST(Mapper, KeysBecomeSourceKindAndTimeAndLeaveTheFields) {
    MappingOptions options;
    options.source_key = "device.id";
    options.kind_key = "type";
    options.time_key = "ts";
    Mapper mapper(options, 1);
    Mapped m;
    ASSERT_FALSE(map_into(mapper, R"({"device":{"id":42,"fw":"1.2"},"type":"reading","ts":1700000000,"v":3})", m));
    EXPECT_EQ(m.source(), "42");
    EXPECT_EQ(m.kind(), "reading");
    EXPECT_EQ(m.message.getTime(), 1'700'000'000 * k_ns_per_second);
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"device.fw", "v"}));
}

TEST(Mapper, EpochTimesInEveryUnitAndRfc3339Text) {
    MappingOptions options;
    options.time_key = "ts";
    Mapper automatic(options, 1);
    Mapped m;
    const int64_t expected = 1'700'000'000'250'000'000;
    for (const char* record : {R"({"ts":1700000000.25})", R"({"ts":1700000000250})", R"({"ts":1700000000250000})",
                               R"({"ts":1700000000250000000})", R"({"ts":"2023-11-14T22:13:20.25Z"})",
                               R"({"ts":"1700000000250"})"}) {
        ASSERT_FALSE(map_into(automatic, record, m)) << record;
        EXPECT_EQ(m.message.getTime(), expected) << record;
    }
    options.time_unit = TimeUnit::ms;
    Mapper ms(options, 1);
    ASSERT_FALSE(map_into(ms, R"({"ts":5})", m));
    EXPECT_EQ(m.message.getTime(), 5 * k_ns_per_ms);
}

TEST(Mapper, ABadTimeKeyOrSourceKeyIsARefusalWithTheReason) {
    MappingOptions options;
    options.time_key = "ts";
    options.source_key = "dev";
    Mapper mapper(options, 1);
    Mapped m;
    auto reason = map_into(mapper, R"({"ts":"yesterday"})", m);
    ASSERT_TRUE(reason);
    EXPECT_NE(reason->find("time key \"ts\""), std::string::npos) << *reason;
    reason = map_into(mapper, R"({"ts":1e300})", m);
    ASSERT_TRUE(reason);
    reason = map_into(mapper, R"({"ts":"9796-11-26T10:00:00Z"})", m);  // beyond int64 ns: found by ingest_fuzz
    ASSERT_TRUE(reason);
    reason = map_into(mapper, R"({"dev":[1,2]})", m);
    ASSERT_TRUE(reason);
    EXPECT_NE(reason->find("source key \"dev\""), std::string::npos) << *reason;
    EXPECT_TRUE(map_into(mapper, "21.5", m));
    EXPECT_TRUE(map_into(mapper, R"({"$barrier":1,"time":2})", m));
}

TEST(Mapper, TopicHintsComeBetweenKeysAndTheRecordsOwnValues) {
    MappingOptions options;
    options.source_key = "dev";
    options.kind = "telemetry";
    Mapper mapper(options, 1);
    Mapped m;
    ASSERT_FALSE(map_into(mapper, R"({"source":"own","x":1})", m, {.source = "topic-site", .kind = ""}));
    EXPECT_EQ(m.source(), "topic-site");
    EXPECT_EQ(m.kind(), "telemetry");  // nothing else gave one
    ASSERT_FALSE(map_into(mapper, R"({"dev":"d7","kind":"alert"})", m, {.source = "topic-site", .kind = ""}));
    EXPECT_EQ(m.source(), "d7");
    EXPECT_EQ(m.kind(), "alert");
    ASSERT_FALSE(map_into(mapper, R"({"kind":"alert"})", m, {.source = "", .kind = "status"}));
    EXPECT_EQ(m.kind(), "status");
}

TEST(Mapper, HeaderKeysMhCannotTakeAreKeptAsRecordFields) {
    Mapper mapper({}, 1);
    Mapped m;
    ASSERT_FALSE(map_into(mapper, R"({"id":4711,"time":"10:32","source":"s1","v":1})", m));
    EXPECT_EQ(m.source(), "s1");
    EXPECT_EQ(m.message.getTime(), k_now);
    EXPECT_EQ(m.message.getId().size(), 16u);
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"record_id", "record_time", "v"}));
    EXPECT_EQ(m.message.getFields()[0].getValue().getInt(), 4711);
}

TEST(Mapper, AnOptionKeyThatIsAHeaderNameIsReadAsTheOptionSays) {
    MappingOptions options;
    options.time_key = "time";
    options.time_unit = TimeUnit::ms;
    options.source_key = "id";
    Mapper mapper(options, 1);
    Mapped m;
    ASSERT_FALSE(map_into(mapper, R"({"time":1700000000123,"id":"meter-9","v":1})", m));
    EXPECT_EQ(m.message.getTime(), 1'700'000'000'123 * k_ns_per_ms);
    EXPECT_EQ(m.source(), "meter-9");
    EXPECT_EQ(m.field_names(), (std::vector<std::string>{"v"}));
}

TEST(Mapper, AMessageOverTheFrameLimitIsRefused) {
    Mapper mapper({}, 1);
    std::vector<std::byte> frame;
    std::string big = R"({"text":")" + std::string(4000, 'x') + R"("})";
    auto reason = mapper.map(big, {}, k_now, frame, 1024);
    ASSERT_TRUE(reason);
    EXPECT_NE(reason->find("over the frame limit"), std::string::npos);
    EXPECT_TRUE(frame.empty());
}

TEST(RecordExtractor, FindsTheArrayAtAPath) {
    RecordExtractor extractor;
    std::vector<Record> records;
    ASSERT_FALSE(extractor.extract(R"({"data":{"items":[{"id":1,"v":2}, {"id":2, "v":3}],"n":2}})", "data.items", "id",
                                   records));
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].json, R"({"id":1,"v":2})");
    EXPECT_EQ(records[1].json, R"({"id":2,"v":3})");
    EXPECT_EQ(records[1].key, "2");
}

TEST(RecordExtractor, AnObjectIsOneRecordAndTheRootIsTheDefault) {
    RecordExtractor extractor;
    std::vector<Record> records;
    ASSERT_FALSE(extractor.extract(R"({"v":1})", "", "", records));
    ASSERT_EQ(records.size(), 1u);
    ASSERT_FALSE(extractor.extract(R"([{"v":1},{"v":2},{"v":3}])", "", "missing", records));
    ASSERT_EQ(records.size(), 3u);
    EXPECT_EQ(records[0].key, "");
}

TEST(RecordExtractor, SaysWhyThereAreNoRecords) {
    RecordExtractor extractor;
    std::vector<Record> records;
    auto reason = extractor.extract(R"({"data":{}})", "data.items", "", records);
    ASSERT_TRUE(reason);
    EXPECT_EQ(*reason, "path \"data.items\": no key \"items\"");
    reason = extractor.extract(R"({"data":[1]})", "data.items", "", records);
    ASSERT_TRUE(reason);
    reason = extractor.extract(R"({"data":)", "", "", records);
    ASSERT_TRUE(reason);
    EXPECT_EQ(reason->rfind("invalid JSON", 0), 0u);
}

TEST(Csv, LinesSplitWithQuotesAndDoubledQuotes) {
    std::vector<std::string> cells;
    std::vector<bool> quoted;
    ASSERT_TRUE(split_csv_line(R"(a,"b,c","say ""hi""",,"")", cells, quoted));
    EXPECT_EQ(cells, (std::vector<std::string>{"a", "b,c", R"(say "hi")", "", ""}));
    EXPECT_EQ(quoted, (std::vector<bool>{false, true, true, false, true}));
    EXPECT_FALSE(split_csv_line(R"(a,"open)", cells, quoted));
}

TEST(Csv, RowsBecomeTypedJsonAsMhCatReadsThem) {
    std::vector<std::string> header{"source", "temperature", "count", "ok", "status", "empty", "quoted_empty"};
    std::string json;
    ASSERT_FALSE(csv_row_to_json(header, R"(s1,21.5,7,TRUE,007,,"")", json));
    EXPECT_EQ(json, R"({"source":"s1","temperature":21.5,"count":7,"ok":true,"status":"007","quoted_empty":""})");
    auto reason = csv_row_to_json(header, "a,b", json);
    ASSERT_TRUE(reason);
    EXPECT_EQ(*reason, "2 cells, header has 7");
}

}  // namespace
