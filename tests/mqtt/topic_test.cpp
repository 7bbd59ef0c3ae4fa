// MQTT topic names, filters and matching (MQTT 3.1.1 section 4.7).
#include "mqtt/topic.h"

#include <gtest/gtest.h>

#include <string>

using namespace mh::mqtt;
using namespace std::string_literals;

TEST(Topic, Names) {
    EXPECT_EQ(check_topic_name("telemetry/sensor-000123"), std::nullopt);
    EXPECT_EQ(check_topic_name("/"), std::nullopt);
    EXPECT_EQ(check_topic_name("a//b"), std::nullopt);
    EXPECT_EQ(check_topic_name("température/℃"), std::nullopt);
    EXPECT_EQ(check_topic_name(""), TopicError::empty);
    EXPECT_EQ(check_topic_name("a/+"), TopicError::wildcard);
    EXPECT_EQ(check_topic_name("a/#"), TopicError::wildcard);
    EXPECT_EQ(check_topic_name("a#b"), TopicError::wildcard);
    EXPECT_EQ(check_topic_name("a\x00"s), TopicError::nul);
    EXPECT_EQ(check_topic_name("a\nb"), TopicError::control);
    EXPECT_EQ(check_topic_name("a\x7f"), TopicError::control);
    EXPECT_EQ(check_topic_name("a\xc2\x85"), TopicError::control);  // U+0085, a C1 control
    EXPECT_EQ(check_topic_name("\xff"), TopicError::bad_utf8);
    EXPECT_EQ(check_topic_name("\xe2\x82"), TopicError::bad_utf8);          // cut short
    EXPECT_EQ(check_topic_name("\xe0\x80\xaf"), TopicError::bad_utf8);      // overlong
    EXPECT_EQ(check_topic_name("\xf4\x90\x80\x80"), TopicError::bad_utf8);  // beyond U+10FFFF
    EXPECT_EQ(check_topic_name(std::string(65536, 'a')), TopicError::too_long);
    EXPECT_STREQ(describe(TopicError::wildcard), "wildcard '+' or '#' in a topic name");
}

TEST(Topic, Filters) {
    for (const char* good : {"#", "+", "a/#", "a/+/c", "+/+", "/+", "a//#", "+/#", "a/b"})
        EXPECT_EQ(check_topic_filter(good), std::nullopt) << good;
    for (const char* bad : {"a#", "a/#/b", "#/a", "a+", "a/+b", "a/b+/c", "##", "++"})
        EXPECT_EQ(check_topic_filter(bad), TopicError::bad_wildcard) << bad;
    EXPECT_EQ(check_topic_filter(""), TopicError::empty);
    EXPECT_EQ(check_topic_filter("a/\t"), TopicError::control);
}

TEST(Topic, Matching) {
    EXPECT_TRUE(topic_matches("a/b", "a/b"));
    EXPECT_FALSE(topic_matches("a/b", "a/c"));
    EXPECT_FALSE(topic_matches("a/b", "a/b/c"));
    EXPECT_FALSE(topic_matches("a/b/c", "a/b"));
    EXPECT_TRUE(topic_matches("#", "a/b/c"));
    EXPECT_TRUE(topic_matches("a/#", "a"));  // the parent level too
    EXPECT_TRUE(topic_matches("a/#", "a/b/c"));
    EXPECT_FALSE(topic_matches("a/#", "ab"));
    EXPECT_TRUE(topic_matches("+/b", "a/b"));
    EXPECT_TRUE(topic_matches("a/+", "a/"));  // an empty level is a level
    EXPECT_FALSE(topic_matches("a/+", "a"));
    EXPECT_FALSE(topic_matches("a/+", "a/b/c"));
    EXPECT_TRUE(topic_matches("+/+", "/b"));
    EXPECT_TRUE(topic_matches("a/+/#", "a/b"));
    EXPECT_TRUE(topic_matches("a/+/#", "a/b/c/d"));
    EXPECT_TRUE(topic_matches("commands/gw-01/#", "commands/gw-01/sensor-3"));
    EXPECT_FALSE(topic_matches("commands/gw-01/#", "commands/gw-02"));
    EXPECT_FALSE(topic_matches("#", "$SYS/uptime"));  // [MQTT-4.7.2-1]
    EXPECT_FALSE(topic_matches("+/uptime", "$SYS/uptime"));
    EXPECT_TRUE(topic_matches("$SYS/#", "$SYS/uptime"));
}
