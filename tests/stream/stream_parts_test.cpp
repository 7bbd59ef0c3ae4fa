// The small parts of mh-stream's sources: broker URLs, topic levels, and the position file.
#include "stream/file_source.h"
#include "stream/mqtt_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace {

using namespace mh::stream;

BrokerAddress broker(const std::string& url) {
    auto parsed = parse_broker_url(url);
    if (auto* error = std::get_if<std::string>(&parsed)) ADD_FAILURE() << url << ": " << *error;
    return std::get<BrokerAddress>(parsed);
}

TEST(BrokerUrl, SchemesPickTlsAndTheDefaultPort) {
    auto plain = broker("mqtt://broker.example");
    EXPECT_FALSE(plain.tls);
    EXPECT_EQ(plain.host, "broker.example");
    EXPECT_EQ(plain.port, 1883);
    auto tls = broker("mqtts://10.0.0.7:9883/");
    EXPECT_TRUE(tls.tls);
    EXPECT_EQ(tls.host, "10.0.0.7");
    EXPECT_EQ(tls.port, 9883);
    auto v6 = broker("mqtts://[::1]:8884");
    EXPECT_EQ(v6.host, "::1");
    EXPECT_EQ(v6.port, 8884);
}

TEST(BrokerUrl, BadOnesSayWhy) {
    for (const char* url : {"http://x", "mqtt://", "mqtt://host:0", "mqtt://host:99999", "mqtt://host:", "mqtt://[::1",
                            "mqtt://user@host"})
        EXPECT_TRUE(std::holds_alternative<std::string>(parse_broker_url(url))) << url;
}

TEST(TopicLevel, CountsFromZero) {
    EXPECT_EQ(topic_level("plant/north/pump-7/telemetry", 0), "plant");
    EXPECT_EQ(topic_level("plant/north/pump-7/telemetry", 2), "pump-7");
    EXPECT_EQ(topic_level("plant/north/pump-7/telemetry", 3), "telemetry");
    EXPECT_EQ(topic_level("plant/north", 5), "");
    EXPECT_EQ(topic_level("a//b", 1), "");
}

TEST(PositionFile, SavedAndLoadedWhole) {
    std::string dir = ::testing::TempDir() + "position-XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    std::string path = dir + "/app.pos";
    EXPECT_FALSE(load_position(path));
    save_position(path, {12, 345, 6789});
    auto loaded = load_position(path);
    ASSERT_TRUE(loaded);
    EXPECT_EQ(*loaded, (FilePosition{12, 345, 6789}));
    save_position(path, {12, 346, 0});
    EXPECT_EQ(*load_position(path), (FilePosition{12, 346, 0}));
    EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0);  // renamed away
    std::ofstream(path) << "garbage";
    EXPECT_FALSE(load_position(path));
    std::remove(path.c_str());
    ::rmdir(dir.c_str());
}

}  // namespace
