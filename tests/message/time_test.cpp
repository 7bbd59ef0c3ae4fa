// Times: RFC 3339 in and out, durations and command-line times.
#include "message/time.h"

#include <gtest/gtest.h>

using namespace mh;

TEST(Rfc3339, ParsesUtcOffsetsAndFractions) {
    EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
    EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:01.5Z"), 1'500'000'000);
    EXPECT_EQ(parse_rfc3339("1970-01-01T01:00:00+01:00"), 0);
    EXPECT_EQ(parse_rfc3339("1969-12-31T23:00:00-01:00"), 0);
    EXPECT_EQ(parse_rfc3339("2026-11-26 15:20:42.000000001z"), 1795706442'000000001);
    EXPECT_EQ(parse_rfc3339("2000-02-29T00:00:00Z"), 951782400LL * k_ns_per_second);
}

TEST(Rfc3339, RejectsMalformedText) {
    for (const char* bad : {"", "2026-11-26", "2026-11-26T15:20:42", "2026-13-01T00:00:00Z",
                            "2026-11-26T25:00:00Z", "2026-11-26T15:20:42.Z", "2026-11-26T15:20:42Zjunk",
                            "2026-11-26T15:20:42+0100", "yesterday"})
        EXPECT_FALSE(parse_rfc3339(bad)) << bad;
}

TEST(Rfc3339, RejectsTimesBeyondTheNanosecondRange) {
    EXPECT_TRUE(parse_rfc3339("2262-04-11T23:47:15Z"));
    EXPECT_TRUE(parse_rfc3339("1677-09-21T00:12:45Z"));
    EXPECT_FALSE(parse_rfc3339("4051-01-01T00:00:00Z"));  // found by test_file_fuzz: it overflowed
    EXPECT_FALSE(parse_rfc3339("9999-12-31T23:59:59Z"));
    EXPECT_FALSE(parse_rfc3339("1600-01-01T00:00:00Z"));
}

TEST(Rfc3339, FormatsWithTheShortestExactFraction) {
    EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00Z");
    EXPECT_EQ(format_rfc3339(1'500'000'000), "1970-01-01T00:00:01.500Z");
    EXPECT_EQ(format_rfc3339(1'000'001'000), "1970-01-01T00:00:01.000001Z");
    EXPECT_EQ(format_rfc3339(1), "1970-01-01T00:00:00.000000001Z");
    EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
}

TEST(Rfc3339, RoundTrips) {
    for (int64_t t : {int64_t{0}, int64_t{1795706442'123456789}, int64_t{-86'400'000'000'001},
                      int64_t{4102444800'000000000}})
        EXPECT_EQ(parse_rfc3339(format_rfc3339(t)), t);
}

TEST(Duration, ParsesUnitsAndSums) {
    EXPECT_EQ(parse_duration_ns("250ms"), 250 * k_ns_per_ms);
    EXPECT_EQ(parse_duration_ns("5m"), 300 * k_ns_per_second);
    EXPECT_EQ(parse_duration_ns("1m30s"), 90 * k_ns_per_second);
    EXPECT_EQ(parse_duration_ns("1.5s"), 1'500'000'000);
    EXPECT_EQ(parse_duration_ns("2"), 2 * k_ns_per_second);
    EXPECT_EQ(parse_duration_ns("1d"), 86400 * k_ns_per_second);
    EXPECT_EQ(parse_duration_ns("10us"), 10'000);
}

TEST(Duration, RejectsUnknownUnitsAndJunk) {
    for (const char* bad : {"", "5x", "m", "1m30", "-1s", "five seconds", "1111111111d", "106751d1d"})
        EXPECT_FALSE(parse_duration_ns(bad)) << bad;
}

TEST(TimeArgument, AcceptsNanosecondsRfc3339AndNow) {
    EXPECT_EQ(parse_time_arg("1234"), 1234);
    EXPECT_EQ(parse_time_arg("1970-01-01T00:00:01Z"), k_ns_per_second);
    auto now = parse_time_arg("now");
    ASSERT_TRUE(now);
    EXPECT_GT(*now, *parse_rfc3339("2020-01-01T00:00:00Z"));
    EXPECT_FALSE(parse_time_arg("12ab"));
}
