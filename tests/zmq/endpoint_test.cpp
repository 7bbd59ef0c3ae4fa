// Endpoint strings in the czmq convention.
#include "zmq/endpoint.h"

#include <gtest/gtest.h>

using namespace mh::zmq;

namespace {
Endpoint parse_ok(std::string_view spec, Direction direction) {
    auto parsed = parse_endpoint(spec, direction);
    if (auto* error = std::get_if<EndpointError>(&parsed)) ADD_FAILURE() << error->message;
    return std::get<Endpoint>(parsed);
}
std::string parse_error(std::string_view spec, Direction direction) {
    auto parsed = parse_endpoint(spec, direction);
    auto* error = std::get_if<EndpointError>(&parsed);
    return error ? error->message : "";
}
}  // namespace

TEST(Endpoint, AtBindsAndGreaterThanConnects) {
    auto bound = parse_ok("@tcp://*:7001", Direction::in);
    EXPECT_EQ(bound.pattern, Pattern::pull);
    ASSERT_EQ(bound.attachments.size(), 1u);
    EXPECT_TRUE(bound.attachments[0].bind);
    EXPECT_EQ(bound.attachments[0].address, "tcp://*:7001");

    auto connected = parse_ok(">tcp://host:7001", Direction::out);
    EXPECT_EQ(connected.pattern, Pattern::push);
    EXPECT_FALSE(connected.attachments[0].bind);
}

TEST(Endpoint, DefaultsFollowCzmq) {
    EXPECT_TRUE(parse_ok("tcp://*:1", Direction::in).attachments[0].bind);      // pull binds
    EXPECT_FALSE(parse_ok("tcp://h:1", Direction::out).attachments[0].bind);    // push connects
}

TEST(Endpoint, PatternPrefixAndCommaLists) {
    auto pub = parse_ok("pub@ipc:///run/mh/tap", Direction::out);
    EXPECT_EQ(pub.pattern, Pattern::pub);
    EXPECT_TRUE(pub.attachments[0].bind);

    auto sub = parse_ok("sub>ipc:///run/mh/tap,>tcp://10.0.0.5:7002", Direction::in);
    EXPECT_EQ(sub.pattern, Pattern::sub);
    ASSERT_EQ(sub.attachments.size(), 2u);
    EXPECT_FALSE(sub.attachments[1].bind);
    EXPECT_EQ(sub.attachments[1].address, "tcp://10.0.0.5:7002");
}

TEST(Endpoint, ExplainsWhatIsWrong) {
    EXPECT_NE(parse_error("pair@tcp://*:1", Direction::in).find("unknown pattern 'pair'"), std::string::npos);
    EXPECT_NE(parse_error("pub@tcp://*:1", Direction::in).find("cannot be used as an input"), std::string::npos);
    EXPECT_NE(parse_error("@udp://x:1", Direction::in).find("is not an address"), std::string::npos);
    EXPECT_NE(parse_error("@tcp://", Direction::in).find("is not an address"), std::string::npos);
    EXPECT_NE(parse_error("@tcp://*:1,", Direction::in).find("is not an address"), std::string::npos);
}

TEST(Endpoint, DashIsStdio) {
    EXPECT_TRUE(is_stdio("-"));
    EXPECT_FALSE(is_stdio("@tcp://*:1"));
}
