// MQTT 3.1.1 packets: every packet type through encode and the incremental reader, and
// every kind of malformed input refused with its own error.
#include "mqtt/packet.h"

#include <gtest/gtest.h>

#include <string>

using namespace mh::mqtt;
using namespace std::string_literals;

namespace {

// Encodes `packet`, then reads it back fed one byte at a time (the worst fragmentation).
// (The packet returned views into a reader that is gone: only its scalars are for the caller.)
Packet round_trip(const Packet& packet) {
    std::string bytes;
    encode(bytes, packet);
    PacketReader reader;
    Packet out;
    for (size_t i = 0; i + 1 < bytes.size(); ++i) {
        reader.feed(bytes.substr(i, 1));
        EXPECT_EQ(reader.next(out), ReadStatus::need_more) << "at byte " << i;
    }
    reader.feed(bytes.substr(bytes.size() - 1));
    EXPECT_EQ(reader.next(out), ReadStatus::packet);
    EXPECT_EQ(reader.buffered_bytes(), 0u);
    // Views into the reader's buffer are valid until its next feed() or next().
    std::string again;
    encode(again, out);
    EXPECT_EQ(again, bytes) << "re-encoding differs";
    EXPECT_EQ(reader.next(out), ReadStatus::need_more);
    return out;
}

// What the reader says about `bytes` fed at once.
std::optional<ParseError> parse_error(const std::string& bytes, size_t max = k_default_max_packet_bytes) {
    PacketReader reader(max);
    reader.feed(bytes);
    Packet packet;
    ReadStatus status;
    while ((status = reader.next(packet)) == ReadStatus::packet) {}
    if (status == ReadStatus::need_more) return std::nullopt;
    return reader.error();
}

// A packet from its type byte and body, with the remaining length computed.
std::string raw(uint8_t first, const std::string& body) {
    std::string bytes(1, static_cast<char>(first));
    size_t remaining = body.size();
    do {
        uint8_t byte = remaining & 0x7f;
        remaining >>= 7;
        if (remaining) byte |= 0x80;
        bytes.push_back(static_cast<char>(byte));
    } while (remaining);
    return bytes + body;
}

std::string str(const std::string& text) {
    return std::string{static_cast<char>(text.size() >> 8), static_cast<char>(text.size() & 0xff)} + text;
}

// A CONNECT body: protocol name, level, flags, keep-alive 60, then `payload`.
std::string connect_body(uint8_t flags, const std::string& payload, const std::string& name = "MQTT",
                         uint8_t level = 4) {
    return str(name) + std::string{static_cast<char>(level), static_cast<char>(flags), 0, 60} + payload;
}

}  // namespace

TEST(Packet, ConnectWithEverything) {
    Connect connect;
    connect.clean_session = false;
    connect.keep_alive_s = 30;
    connect.client_id = "gw-01";
    connect.will = Will{"status/gw-01", "offline", QoS::at_least_once, true};
    connect.username = "gw-01";
    static const std::string password = "tok\0en"s;  // binary, NUL included
    connect.password = password;
    auto out = std::get<Connect>(round_trip(connect));
    EXPECT_EQ(out.protocol_level, 4);
    EXPECT_FALSE(out.clean_session);
    EXPECT_EQ(out.keep_alive_s, 30);
    EXPECT_EQ(packet_type(connect), PacketType::connect);
}

TEST(Packet, ConnectMinimal) {
    Connect connect;
    connect.client_id = "";
    std::string bytes;
    encode(bytes, connect);
    // The bytes of the spec's example, keep-alive 0, clean session, empty id.
    EXPECT_EQ(bytes, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x00\x00\x00"s);
    round_trip(connect);
}

TEST(Packet, ConnackPublishAcksAndTheRest) {
    round_trip(Connack{true, ConnectCode::accepted});
    round_trip(Connack{false, ConnectCode::not_authorized});
    round_trip(Publish{"telemetry/s1", "{\"t\":21.5}", QoS::at_most_once, false, false, 0});
    round_trip(Publish{"telemetry/s1", "", QoS::at_least_once, true, true, 7});
    round_trip(Publish{"a", std::string(70000, 'x'), QoS::exactly_once, false, false, 65535});
    round_trip(Puback{1});
    round_trip(Pubrec{2});
    round_trip(Pubrel{3});
    round_trip(Pubcomp{4});
    round_trip(Subscribe{9, {{"commands/gw-01", QoS::at_least_once}, {"a/+/#", QoS::at_most_once}}});
    round_trip(Suback{9, {1, 0, k_suback_failure}});
    round_trip(Unsubscribe{10, {"commands/gw-01", "a/#"}});
    round_trip(Unsuback{10});
    round_trip(Pingreq{});
    round_trip(Pingresp{});
    round_trip(Disconnect{});
    std::string bytes;
    encode(bytes, Pingreq{});
    encode(bytes, Disconnect{});
    EXPECT_EQ(bytes, "\xc0\x00\xe0\x00"s);
}

TEST(Packet, PublishFields) {
    std::string bytes;
    encode(bytes, Publish{"t/1", "hello", QoS::at_least_once, true, false, 0x1234});
    EXPECT_EQ(bytes, "\x33\x0c\x00\x03t/1\x12\x34hello"s);
    PacketReader reader;
    reader.feed(bytes);
    Packet packet;
    ASSERT_EQ(reader.next(packet), ReadStatus::packet);
    auto& publish = std::get<Publish>(packet);
    EXPECT_EQ(publish.topic, "t/1");
    EXPECT_EQ(publish.payload, "hello");
    EXPECT_EQ(publish.qos, QoS::at_least_once);
    EXPECT_TRUE(publish.retain);
    EXPECT_FALSE(publish.dup);
    EXPECT_EQ(publish.packet_id, 0x1234);
}

TEST(Packet, SeveralPacketsInOneRead) {
    std::string bytes;
    encode(bytes, Pingreq{});
    encode(bytes, Publish{"a/b", "1", QoS::at_most_once, false, false, 0});
    encode(bytes, Puback{5});
    std::string partial;
    encode(partial, Publish{"a/b", "2", QoS::at_most_once, false, false, 0});
    bytes += partial.substr(0, 3);
    PacketReader reader;
    reader.feed(bytes);
    Packet packet;
    ASSERT_EQ(reader.next(packet), ReadStatus::packet);
    EXPECT_EQ(packet_type(packet), PacketType::pingreq);
    ASSERT_EQ(reader.next(packet), ReadStatus::packet);
    EXPECT_EQ(std::get<Publish>(packet).payload, "1");
    ASSERT_EQ(reader.next(packet), ReadStatus::packet);
    EXPECT_EQ(std::get<Puback>(packet).packet_id, 5);
    EXPECT_EQ(reader.next(packet), ReadStatus::need_more);
    reader.feed(partial.substr(3));
    ASSERT_EQ(reader.next(packet), ReadStatus::packet);
    EXPECT_EQ(std::get<Publish>(packet).payload, "2");
}

TEST(Packet, RemainingLengthLimits) {
    // The largest 4-byte length parses as a header; a fifth byte is an error.
    auto scan = scan_header("\x30\xff\xff\xff\x7f"s, SIZE_MAX);
    EXPECT_EQ(scan.status, HeaderScan::complete);
    EXPECT_EQ(scan.packet_bytes, 5 + k_max_remaining_length);
    EXPECT_EQ(parse_error("\x30\xff\xff\xff\xff\x01"s, SIZE_MAX), ParseError::bad_remaining_length);
    // Incomplete headers wait.
    EXPECT_EQ(scan_header("\x30\xff"s, SIZE_MAX).status, HeaderScan::incomplete);
    EXPECT_EQ(scan_header("", SIZE_MAX).status, HeaderScan::incomplete);
}

TEST(Packet, OversizedIsRefusedFromTheHeaderAlone) {
    // A PUBLISH declaring 1 MiB, against a 64 KiB limit: refused on its 4 header bytes,
    // before any of the body exists.
    PacketReader reader(64 * 1024);
    reader.feed("\x30\x80\x80\x40"s);
    Packet packet;
    EXPECT_EQ(reader.next(packet), ReadStatus::error);
    EXPECT_EQ(reader.error(), ParseError::too_large);
    EXPECT_EQ(reader.error_packet_type(), PacketType::publish);
    EXPECT_EQ(reader.buffered_bytes(), 4u);
    // The limit counts the whole packet: exactly at it passes, one more byte fails.
    std::string at_limit;
    encode(at_limit, Publish{"t", std::string(100 - 2 - 3, 'x'), QoS::at_most_once, false, false, 0});
    ASSERT_EQ(at_limit.size(), 100u);
    EXPECT_EQ(parse_error(at_limit, 100), std::nullopt);
    EXPECT_EQ(parse_error(at_limit, 99), ParseError::too_large);
}

TEST(Packet, ReservedTypesAndFlags) {
    EXPECT_EQ(parse_error("\x00\x00"s), ParseError::reserved_packet_type);
    EXPECT_EQ(parse_error("\xf0\x00"s), ParseError::reserved_packet_type);
    EXPECT_EQ(parse_error("\xc1\x00"s), ParseError::bad_header_flags);   // PINGREQ with a flag
    EXPECT_EQ(parse_error("\x60\x02\x00\x01"s), ParseError::bad_header_flags);  // PUBREL needs 0010
    EXPECT_EQ(parse_error("\x80\x06\x00\x01\x00\x01"s "a\x00"s), ParseError::bad_header_flags);
    EXPECT_EQ(parse_error("\xa0\x05\x00\x01\x00\x01"s "a"), ParseError::bad_header_flags);
    EXPECT_EQ(parse_error(raw(0x36, str("a") + "\x00\x01"s)), ParseError::bad_header_flags);  // QoS 3
    EXPECT_EQ(parse_error(raw(0x38, str("a"))), ParseError::bad_header_flags);  // DUP with QoS 0
    EXPECT_EQ(parse_error("\x20\x02\x02\x00"s), ParseError::bad_header_flags);  // CONNACK flags
    EXPECT_EQ(parse_error("\x20\x02\x00\x06"s), ParseError::bad_return_code);
}

TEST(Packet, TruncatedAndTrailing) {
    EXPECT_EQ(parse_error(raw(0x30, "\x00\x05"s "ab")), ParseError::truncated);   // topic cut short
    EXPECT_EQ(parse_error(raw(0x32, str("a") + "\x00"s)), ParseError::truncated);  // packet id cut
    EXPECT_EQ(parse_error("\x40\x01\x00"s), ParseError::truncated);               // PUBACK
    EXPECT_EQ(parse_error("\x40\x03\x00\x01\x00"s), ParseError::trailing_bytes);
    EXPECT_EQ(parse_error("\xc0\x01\x00"s), ParseError::trailing_bytes);          // PINGREQ
    EXPECT_EQ(parse_error("\xe0\x01\x00"s), ParseError::trailing_bytes);          // DISCONNECT
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x02, str("id") + "x"))), ParseError::trailing_bytes);
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x02, ""))), ParseError::truncated);  // no client id
}

TEST(Packet, ConnectErrors) {
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x02, str("id"), "MQTX"))), ParseError::bad_protocol_name);
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x02, str("id"), "MQTT", 5))),
              ParseError::unsupported_protocol_level);
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x02, str("id"), "MQIsdp", 3))),
              ParseError::unsupported_protocol_level);
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x03, str("id")))), ParseError::bad_connect_flags);  // reserved
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x42, str("id") + str("pw")))),
              ParseError::bad_connect_flags);  // password without user name
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x1e, str("id") + str("t") + str("m")))),
              ParseError::bad_connect_flags);  // will QoS 3
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x22, str("id")))), ParseError::bad_connect_flags);  // will retain, no will
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x0a, str("id")))), ParseError::bad_connect_flags);  // will QoS, no will
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x02, str("i\x00"s "d")))), ParseError::bad_utf8);
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x02, str("\xc0\xaf")))), ParseError::bad_utf8);  // overlong
    EXPECT_EQ(parse_error(raw(0x10, connect_body(0x06, str("id") + str("a/#") + str("m")))),
              ParseError::bad_topic_name);  // will topic with a wildcard
}

TEST(Packet, TopicErrors) {
    EXPECT_EQ(parse_error(raw(0x30, str("a/+"))), ParseError::bad_topic_name);
    EXPECT_EQ(parse_error(raw(0x30, str(""))), ParseError::bad_topic_name);
    EXPECT_EQ(parse_error(raw(0x30, str("a\x01"))), ParseError::bad_topic_name);
    EXPECT_EQ(parse_error(raw(0x30, str("a\x00"s))), ParseError::bad_utf8);
    EXPECT_EQ(parse_error(raw(0x30, str("\xed\xa0\x80"))), ParseError::bad_utf8);  // a surrogate
    EXPECT_EQ(parse_error(raw(0x82, "\x00\x01"s + str("a/#/b") + "\x01")), ParseError::bad_topic_filter);
    EXPECT_EQ(parse_error(raw(0xa2, "\x00\x01"s + str("a+"))), ParseError::bad_topic_filter);
}

TEST(Packet, PacketIdsAndLists) {
    EXPECT_EQ(parse_error(raw(0x32, str("a") + "\x00\x00"s)), ParseError::zero_packet_id);
    EXPECT_EQ(parse_error("\x40\x02\x00\x00"s), ParseError::zero_packet_id);
    EXPECT_EQ(parse_error(raw(0x82, "\x00\x01"s)), ParseError::no_topic_filters);
    EXPECT_EQ(parse_error(raw(0xa2, "\x00\x01"s)), ParseError::no_topic_filters);
    EXPECT_EQ(parse_error(raw(0x82, "\x00\x01"s + str("a") + "\x03")), ParseError::bad_subscribe_options);
    EXPECT_EQ(parse_error(raw(0x82, "\x00\x01"s + str("a") + "\x41")), ParseError::bad_subscribe_options);
    EXPECT_EQ(parse_error(raw(0x82, "\x00\x01"s + str("a"))), ParseError::truncated);  // QoS byte missing
    EXPECT_EQ(parse_error(raw(0x90, "\x00\x01"s + "\x03")), ParseError::bad_return_code);
}

TEST(Packet, ErrorIsSticky) {
    PacketReader reader;
    reader.feed("\xf0\x00"s);
    Packet packet;
    EXPECT_EQ(reader.next(packet), ReadStatus::error);
    std::string good;
    encode(good, Pingreq{});
    reader.feed(good);
    EXPECT_EQ(reader.next(packet), ReadStatus::error);
    EXPECT_EQ(reader.error(), ParseError::reserved_packet_type);
    EXPECT_STREQ(describe(ParseError::reserved_packet_type), "reserved packet type");
}

TEST(Packet, NamesAndDescriptions) {
    EXPECT_STREQ(packet_name(PacketType::subscribe), "SUBSCRIBE");
    for (int e = 0; e <= static_cast<int>(ParseError::bad_return_code); ++e)
        EXPECT_STRNE(describe(static_cast<ParseError>(e)), "malformed packet");
}
