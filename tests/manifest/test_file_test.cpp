// A channel's test file: what a good one becomes (settings inherited from the top, messages
// as frames, default `at` per stage), and each kind of mistake at its line and column.
#include "manifest/manifest.h"
#include "manifest/test_file.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "schema/message.capnp.h"

using namespace mh::manifest;

namespace {

constexpr std::string_view k_channel = R"(
[stage.sensors]
run = "mh-gen"

[stage.check]
run = "mh-filter --alert 'hot=temperature > 8'"
from = ["sensors"]

[stage.alerts]
run = "mh-store append --db alerts"
from = [{ stage = "check", when = 'kind == "alert"' }]
)";

Manifest channel() {
    auto result = load(k_channel, "shop");
    EXPECT_TRUE(result.ok());
    return result.manifest;
}

std::vector<std::string> errors_of(const TestLoadResult& result) {
    std::vector<std::string> out;
    for (const auto& e : result.errors)
        out.push_back(std::to_string(e.where.line) + ":" + std::to_string(e.where.column) + " " + e.message);
    return out;
}

bool has_error(const TestLoadResult& result, std::string_view at, std::string_view needle) {
    for (const auto& e : errors_of(result))
        if (e.starts_with(at) && e.find(needle) != std::string::npos) return true;
    return false;
}

mh::schema::Message::Reader read(const TestMessage& message, std::unique_ptr<capnp::FlatArrayMessageReader>& keep) {
    keep = std::make_unique<capnp::FlatArrayMessageReader>(
        kj::ArrayPtr<const capnp::word>(message.frame_words(), message.frame_word_count()));
    return keep->getRoot<mh::schema::Message>();
}

}  // namespace

TEST(manifest, test_file_good) {
    Manifest m = channel();
    auto result = load_tests(R"(
now = 2026-01-01T00:10:00Z
skip = ["alerts"]

[[test]]
name = "warm"
timeout = "2s"

[[test.input]]
stage = "sensors"
messages = [
  { time = 2026-01-01T00:00:00Z, source = "truck-1", temperature = 9.5, motor = { rpm = 1200 } },
  '{"source":"truck-2","temperature":3}',
]

[[test.expect]]
stage = "alerts"
count = 1

[[test.expect]]
stage = "check"
where = "temperature > 8"
ordered = false
exact = true
tolerance = 0.01
messages = [{ source = "truck-1" }]
absent = [{ source = "truck-9" }]

[[test]]
name = "cool"
now = "2026-01-01T00:00:00Z"
skip = ["check"]

[[test.input]]
stage = "sensors"
file = "cool.jsonl"

[[test.expect]]
stage = "alerts"
at = "in"
contains = [{ source = "truck-2" }]
)",
                             m);
    ASSERT_TRUE(result.ok()) << (result.errors.empty() ? "" : result.errors[0].message);
    ASSERT_EQ(result.tests.size(), 2u);

    const ChannelTest& warm = result.tests[0];
    EXPECT_EQ(warm.name, "warm");
    EXPECT_EQ(warm.now_ns, int64_t{1767226200} * 1'000'000'000);
    EXPECT_EQ(warm.skip, std::vector<std::string>{"alerts"});
    EXPECT_EQ(warm.timeout_ns, 2'000'000'000);
    ASSERT_EQ(warm.inputs.size(), 1u);
    ASSERT_EQ(warm.inputs[0].messages.size(), 2u);
    std::unique_ptr<capnp::FlatArrayMessageReader> keep;
    auto first = read(warm.inputs[0].messages[0], keep);
    EXPECT_EQ(first.getTime(), int64_t{1767225600} * 1'000'000'000);
    EXPECT_EQ(std::string(first.getSource().cStr()), "truck-1");
    ASSERT_EQ(first.getFields().size(), 2u);  // in the order written, nested tables dotted
    EXPECT_EQ(std::string(first.getFields()[0].getName().cStr()), "temperature");
    EXPECT_DOUBLE_EQ(first.getFields()[0].getValue().getFloat(), 9.5);
    EXPECT_EQ(std::string(first.getFields()[1].getName().cStr()), "motor.rpm");
    EXPECT_EQ(first.getFields()[1].getValue().getInt(), 1200);
    auto second = read(warm.inputs[0].messages[1], keep);
    EXPECT_EQ(second.getFields()[0].getValue().getInt(), 3);

    ASSERT_EQ(warm.expectations.size(), 2u);
    EXPECT_EQ(warm.expectations[0].at, At::in);  // a destination: what arrives at it
    EXPECT_EQ(warm.expectations[0].count, 1u);
    const Expectation& check = warm.expectations[1];
    EXPECT_EQ(check.at, At::out);
    EXPECT_EQ(check.where_expr, "temperature > 8");
    EXPECT_FALSE(check.ordered);
    EXPECT_TRUE(check.exact);
    EXPECT_DOUBLE_EQ(check.tolerance, 0.01);
    EXPECT_TRUE(check.has_messages);
    EXPECT_EQ(check.messages.size(), 1u);
    EXPECT_EQ(check.absent.size(), 1u);
    EXPECT_FALSE(check.count);

    const ChannelTest& cool = result.tests[1];
    EXPECT_EQ(cool.now_ns, int64_t{1767225600} * 1'000'000'000);
    EXPECT_EQ(cool.skip, (std::vector<std::string>{"alerts", "check"}));  // added to the file's
    EXPECT_EQ(cool.timeout_ns, k_default_stage_timeout_ns);
    EXPECT_EQ(cool.inputs[0].file, "cool.jsonl");
    EXPECT_EQ(cool.inputs[0].file_where.line, 36u);
    EXPECT_EQ(cool.expectations[0].contains.size(), 1u);
}

TEST(manifest, test_file_mistakes) {
    Manifest m = channel();
    auto result = load_tests(R"([[test]]
name = "a"
nme = "b"

[[test.input]]
stage = "sensor"
messages = [{ time = 12:00:00 }, '{"id":"nope"}', 5]

[[test.input]]
stage = "check"

[[test.expect]]
stage = "sensors"
at = "in"
count = 1

[[test.expect]]
stage = "alerts"
where = "temperature >"
ordered = "yes"
tolerance = -1

[[test]]
name = "a"
)",
                             m);
    EXPECT_FALSE(result.ok());
    EXPECT_TRUE(has_error(result, "3:1 ", "unknown key 'nme' in test 1 (did you mean 'name'?)"));
    EXPECT_TRUE(has_error(result, "6:9 ", "input for 'sensor' is not a stage of the channel (did you mean 'sensors'?)"));
    EXPECT_TRUE(has_error(result, "7:13 ", "message 1 of 'messages': a date or a time of day alone is not a time"));
    EXPECT_TRUE(has_error(result, "7:34 ", "message 2 of 'messages' is not an mh message: id"));
    EXPECT_TRUE(has_error(result, "7:51 ", "must be a table or a JSON object in a string, not an integer"));
    EXPECT_TRUE(has_error(result, "10:9 ", "input for check needs either messages = [...] or file"));
    EXPECT_TRUE(has_error(result, "14:6 ", "stage sensors is a source: nothing arrives at it"));
    EXPECT_TRUE(has_error(result, "18:9 ", "checks nothing"));
    EXPECT_TRUE(has_error(result, "19:23 ", "bad where condition"));
    EXPECT_TRUE(has_error(result, "20:11 ", "'ordered' in [[test.expect]] must be true or false, not a string"));
    EXPECT_TRUE(has_error(result, "21:13 ", "'tolerance' must be a number, 0 or more"));
    EXPECT_TRUE(has_error(result, "24:8 ", "a second test named 'a'"));
    EXPECT_TRUE(has_error(result, "24:8 ", "test 'a' expects nothing"));
    // Sorted by place.
    for (size_t i = 1; i < result.errors.size(); ++i)
        EXPECT_LE(result.errors[i - 1].where.line, result.errors[i].where.line);
}

TEST(manifest, test_file_shapes) {
    Manifest m = channel();
    EXPECT_TRUE(has_error(load_tests("[[test]\n", m), "1:", "not valid TOML"));
    EXPECT_TRUE(has_error(load_tests("", m), "0:0 ", "the file has no tests"));
    EXPECT_TRUE(has_error(load_tests("test = 5\n", m), "1:8 ", "'test' must be an array of tables"));
    EXPECT_TRUE(has_error(load_tests("[[test]]\nname = \"x\"\ninput = 3\n", m), "3:9 ", "must be written as [[test.input]]"));
    EXPECT_TRUE(has_error(load_tests("timeout = \"0s\"\n", m), "1:11 ", "must be a duration more than 0"));
}

TEST(manifest, test_file_json_lines) {
    std::vector<TestMessage> messages;
    EXPECT_FALSE(decode_json_lines("{\"source\":\"a\"}\n\n  \r\n{\"source\":\"b\",\"t\":1}\r\n", messages));
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(messages[1].where.line, 4u);
    messages.clear();
    auto problem = decode_json_lines("{\"source\":\"a\"}\n[1]\n{}\n", messages);
    ASSERT_TRUE(problem);
    EXPECT_EQ(problem->rfind("line 2: ", 0), 0u) << *problem;
    EXPECT_EQ(messages.size(), 1u);
}
