// mh-route test's comparison of expected and actual messages: in order or not, subsets of
// fields or exact, numbers across int and float within a tolerance, absent and count, a
// where condition on the pinned clock; and the lines a failure reports.
#include "manifest/manifest.h"
#include "manifest/test_file.h"
#include "route/channel_test.h"

#include <gtest/gtest.h>

using namespace mh;
using namespace mh::route;

namespace {

const manifest::Manifest& channel() {
    static const manifest::Manifest m = manifest::load(R"(
[stage.sensors]
run = "mh-gen"
[stage.check]
run = "mh-filter"
from = ["sensors"]
)",
                                                       "c")
                                            .manifest;
    return m;
}

// The expectation of a one-test file whose expect table is `expect`, and the messages
// "seen": those of its input.
struct Case {
    manifest::TestLoadResult loaded;
    std::vector<wire::Frame> frames;

    Case(std::string_view seen, std::string_view expect) {
        std::string text = "[[test]]\nname = \"t\"\n[[test.input]]\nstage = \"sensors\"\nmessages = [" + std::string(seen) +
                           "]\n[[test.expect]]\nstage = \"check\"\n" + std::string(expect) + "\n";
        loaded = manifest::load_tests(text, channel());
        EXPECT_TRUE(loaded.ok()) << (loaded.errors.empty() ? "" : loaded.errors[0].message);
        if (!loaded.ok()) return;
        for (const auto& message : loaded.tests[0].inputs[0].messages)
            frames.push_back({message.frame_words(), message.frame_word_count()});
    }
    CheckResult check(int64_t now_ns = 0) const {
        return check_expectation(loaded.tests[0].expectations[0], frames, now_ns);
    }
};

std::string joined(const CheckResult& result) {
    std::string text;
    for (const auto& line : result.lines) text += line + "\n";
    return text;
}

constexpr std::string_view k_seen = R"(
  { time = 2026-01-01T00:00:00Z, source = "a", kind = "telemetry", temperature = 5.0, n = 3 },
  { time = 2026-01-01T00:01:00Z, source = "b", kind = "alert", rule = "hot" },
)";

}  // namespace

TEST(route, expect_messages_in_order) {
    EXPECT_TRUE(Case(k_seen, R"(messages = [{ source = "a", temperature = 5, n = 3.0 }, { kind = "alert" }])").check().passed);
    auto swapped = Case(k_seen, R"(messages = [{ kind = "alert" }, { source = "a" }])").check();
    EXPECT_FALSE(swapped.passed);
    EXPECT_NE(joined(swapped).find("message 1: {\"time\":\"2026-01-01T00:00:00Z\",\"source\":\"a\""), std::string::npos)
        << joined(swapped);
    EXPECT_NE(joined(swapped).find("  kind: expected \"alert\", got \"telemetry\""), std::string::npos);
    EXPECT_NE(joined(swapped).find("  source: expected \"a\", got \"b\""), std::string::npos);

    auto short_list = Case(k_seen, R"(messages = [{ source = "a" }])").check();
    EXPECT_FALSE(short_list.passed);
    EXPECT_NE(joined(short_list).find("expected 1 message, got 2"), std::string::npos);
    EXPECT_NE(joined(short_list).find("message 2: not expected: {"), std::string::npos);

    auto long_list = Case(k_seen, R"(messages = [{ source = "a" }, { source = "b" }, { source = "c" }])").check();
    EXPECT_NE(joined(long_list).find("message 3: missing: {\"source\":\"c\"}"), std::string::npos) << joined(long_list);
}

TEST(route, expect_unordered_contains_absent_count) {
    EXPECT_TRUE(Case(k_seen, R"(ordered = false
messages = [{ kind = "alert" }, { source = "a" }])").check().passed);
    auto missing = Case(k_seen, R"(ordered = false
messages = [{ kind = "alert" }, { source = "a", temperature = 6.0 }])").check();
    EXPECT_FALSE(missing.passed);
    EXPECT_NE(joined(missing).find("no message matches {\"source\":\"a\",\"temperature\":6.0}"), std::string::npos)
        << joined(missing);
    EXPECT_NE(joined(missing).find("    temperature: expected 6.0, got 5.0"), std::string::npos);

    EXPECT_TRUE(Case(k_seen, R"(contains = [{ rule = "hot" }])").check().passed);
    EXPECT_FALSE(Case(k_seen, R"(contains = [{ rule = "hot" }, { rule = "hot" }])").check().passed);  // distinct
    EXPECT_TRUE(Case(k_seen, R"(absent = [{ source = "c" }])").check().passed);
    auto present = Case(k_seen, R"(absent = [{ rule = "hot" }])").check();
    EXPECT_FALSE(present.passed);
    EXPECT_NE(joined(present).find("unwanted: {"), std::string::npos);
    EXPECT_TRUE(Case(k_seen, "count = 2").check().passed);
    auto count = Case(k_seen, "count = 3").check();
    EXPECT_FALSE(count.passed);
    EXPECT_EQ(count.lines[0], "expected 3 messages, got 2");
}

TEST(route, expect_exact_tolerance_where) {
    EXPECT_FALSE(Case(k_seen, R"(exact = true
contains = [{ source = "a", kind = "telemetry", temperature = 5.0 }])").check().passed);
    auto exact = Case(k_seen, R"(exact = true
contains = [{ source = "a", kind = "telemetry", temperature = 5.0, n = 3 }])").check();
    EXPECT_FALSE(exact.passed);  // time is a key of the message too
    EXPECT_NE(joined(exact).find("time: not expected, got 2026-01-01T00:00:00Z"), std::string::npos) << joined(exact);
    EXPECT_TRUE(Case(k_seen, R"(exact = true
contains = [{ time = 2026-01-01T00:00:00Z, source = "a", kind = "telemetry", temperature = 5.0, n = 3 }])")
                    .check()
                    .passed);

    EXPECT_FALSE(Case(k_seen, R"(contains = [{ temperature = 5.01 }])").check().passed);
    EXPECT_TRUE(Case(k_seen, R"(tolerance = 0.01
contains = [{ temperature = 5.01 }])").check().passed);
    EXPECT_FALSE(Case(k_seen, R"(contains = [{ n = "3" }])").check().passed);  // text is not a number

    EXPECT_TRUE(Case(k_seen, R"(where = 'kind == "alert"'
messages = [{ source = "b" }])").check().passed);
    // now() in where is the test's clock.
    int64_t minute_after = int64_t{1767225660} * 1'000'000'000;
    EXPECT_TRUE(Case(k_seen, R"(where = "now() - time > 30s"
count = 1)").check(minute_after).passed);
    EXPECT_TRUE(Case(k_seen, R"(where = "now() - time > 30s"
count = 0)").check(minute_after - 60'000'000'000).passed);
}

TEST(route, default_test_file) {
    EXPECT_EQ(default_test_file("examples/cold-chain.toml"), "examples/cold-chain.test.toml");
    EXPECT_EQ(default_test_file("shop.toml"), "shop.test.toml");
    EXPECT_EQ(default_test_file("/etc/mh/channel"), "/etc/mh/channel.test.toml");
}
