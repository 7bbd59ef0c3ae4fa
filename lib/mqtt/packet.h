// MQTT 3.1.1 control packets (protocol level 4): an incremental, allocation-light parser over
// received bytes, and encoders for every packet a server or a client sends. Transport-free:
// bytes in, packets out; packets in, bytes out. Byte buffers are std::string/std::string_view
// throughout (their content is binary).
//
// Parsing never throws on bad input: every malformed packet is a ParseError value, and a
// packet larger than the limit is refused as soon as its fixed header (2 to 5 bytes) is
// known, before its body is waited for or buffered.
//
//   mqtt::PacketReader reader(64 * 1024);
//   reader.feed(received);
//   mqtt::Packet packet;
//   while (reader.next(packet) == mqtt::ReadStatus::packet) { ... std::get_if<mqtt::Publish>(&packet) ... }
//   if (reader.error()) ... close the connection, reason describe(*reader.error())
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mh::mqtt {

constexpr uint8_t k_protocol_level_3_1_1 = 4;
constexpr uint8_t k_protocol_level_5 = 5;
constexpr size_t k_max_remaining_length = 268'435'455;   // four 7-bit groups
constexpr size_t k_max_fixed_header_bytes = 5;           // type byte + up to 4 length bytes
constexpr size_t k_default_max_packet_bytes = 256 * 1024;  // whole packet, header included
// Capacity an empty reader (or a session's drained output) keeps; more is given back, so
// that an idle connection holds a few KiB whatever its busiest moment was.
constexpr size_t k_idle_buffer_bytes = 4 * 1024;

enum class PacketType : uint8_t {
    connect = 1,
    connack = 2,
    publish = 3,
    puback = 4,
    pubrec = 5,
    pubrel = 6,
    pubcomp = 7,
    subscribe = 8,
    suback = 9,
    unsubscribe = 10,
    unsuback = 11,
    pingreq = 12,
    pingresp = 13,
    disconnect = 14,
};

const char* packet_name(PacketType type);  // "PUBLISH", ...

enum class QoS : uint8_t { at_most_once = 0, at_least_once = 1, exactly_once = 2 };

// CONNACK return codes (MQTT 3.1.1 table 3.1).
enum class ConnectCode : uint8_t {
    accepted = 0,
    unacceptable_protocol_version = 1,  // also the answer to an MQTT 5 or 3.1 client
    identifier_rejected = 2,
    server_unavailable = 3,
    bad_username_or_password = 4,
    not_authorized = 5,
};

constexpr uint8_t k_suback_failure = 0x80;  // SUBACK return code of a refused filter

// Why bytes are not a valid packet. Every one means the stream cannot be trusted further:
// the server closes the connection (without a reply, except unsupported_protocol_level,
// which deserves a CONNACK with unacceptable_protocol_version).
enum class ParseError : uint8_t {
    bad_remaining_length,        // the length varint runs over 4 bytes
    too_large,                   // the packet is longer than the reader's limit
    reserved_packet_type,        // type 0 or 15
    bad_header_flags,            // fixed-header flags wrong for the type (incl. PUBLISH QoS 3, QoS 0 with DUP)
    truncated,                   // a field runs past the end of the packet
    trailing_bytes,              // bytes left after the packet's last field
    bad_protocol_name,           // CONNECT's protocol name is not "MQTT" (nor "MQIsdp")
    unsupported_protocol_level,  // MQTT 5, 3.1, or an unknown level
    bad_connect_flags,           // reserved bit, will QoS 3, will fields without will, password without user
    bad_utf8,                    // a string that is not UTF-8 or contains U+0000
    bad_topic_name,              // see topic.h: empty, wildcards, control characters
    bad_topic_filter,
    zero_packet_id,              // packet identifiers are 1..65535
    no_topic_filters,            // SUBSCRIBE/UNSUBSCRIBE with an empty list
    bad_subscribe_options,       // requested QoS 3 or reserved bits set
    bad_return_code,             // CONNACK or SUBACK code outside the table
};

const char* describe(ParseError error);

// A CONNECT's last will.
struct Will {
    std::string_view topic;
    std::string_view payload;
    QoS qos = QoS::at_most_once;
    bool retain = false;
};

// Views into the reader's buffer (decoding) or the caller's data (encoding).
struct Connect {
    uint8_t protocol_level = k_protocol_level_3_1_1;
    bool clean_session = true;
    uint16_t keep_alive_s = 0;
    std::string_view client_id;
    std::optional<Will> will;
    std::optional<std::string_view> username;
    std::optional<std::string_view> password;  // binary data
};

struct Connack {
    bool session_present = false;
    ConnectCode code = ConnectCode::accepted;
};

struct Publish {
    std::string_view topic;
    std::string_view payload;  // binary data
    QoS qos = QoS::at_most_once;
    bool retain = false;
    bool dup = false;
    uint16_t packet_id = 0;  // 0 for QoS 0, 1..65535 otherwise
};

// The packets that carry nothing but a packet identifier.
template <PacketType T>
struct PacketIdOnly {
    uint16_t packet_id = 0;
};
using Puback = PacketIdOnly<PacketType::puback>;
using Pubrec = PacketIdOnly<PacketType::pubrec>;
using Pubrel = PacketIdOnly<PacketType::pubrel>;
using Pubcomp = PacketIdOnly<PacketType::pubcomp>;
using Unsuback = PacketIdOnly<PacketType::unsuback>;

struct TopicRequest {
    std::string_view filter;
    QoS qos = QoS::at_most_once;
};

struct Subscribe {
    uint16_t packet_id = 0;
    std::vector<TopicRequest> topics;  // at least one
};

struct Suback {
    uint16_t packet_id = 0;
    std::vector<uint8_t> return_codes;  // granted QoS 0..2, or k_suback_failure
};

struct Unsubscribe {
    uint16_t packet_id = 0;
    std::vector<std::string_view> filters;  // at least one
};

// The packets without a body.
template <PacketType T>
struct EmptyPacket {};
using Pingreq = EmptyPacket<PacketType::pingreq>;
using Pingresp = EmptyPacket<PacketType::pingresp>;
using Disconnect = EmptyPacket<PacketType::disconnect>;

using Packet = std::variant<Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe,
                            Suback, Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect>;

PacketType packet_type(const Packet& packet);

// ---- Decoding ----------------------------------------------------------------------------

// The fixed header at the start of `bytes`.
struct HeaderScan {
    enum Status { complete, incomplete, failed } status = incomplete;
    ParseError error = ParseError::truncated;  // when status == failed
    PacketType type = PacketType::connect;      // when complete
    uint8_t flags = 0;                          // the low nibble of the first byte
    size_t header_bytes = 0;                    // 2..5, when complete
    size_t packet_bytes = 0;                    // header + remaining length, when complete
};

// Reads the fixed header only: type, flags and the remaining length, which is checked
// against `max_packet_bytes` here, so an oversized packet is refused from its first bytes.
HeaderScan scan_header(std::string_view bytes, size_t max_packet_bytes);

// Decodes one whole packet (fixed header included, exactly packet_bytes long as scan_header
// said). `packet` then views into `bytes`. nullopt when valid.
std::optional<ParseError> decode_packet(std::string_view bytes, const HeaderScan& header,
                                        Packet& packet);

enum class ReadStatus {
    packet,     // `packet` holds the next packet, its views valid until the next feed() or next()
    need_more,  // no whole packet buffered: feed more bytes
    error,      // error() says why; the reader is stuck in this state
};

// Splits a received byte stream into packets. Buffers only what it has been fed and not yet
// returned; a packet larger than the limit is an error as soon as its header is fed.
class PacketReader {
public:
    explicit PacketReader(size_t max_packet_bytes = k_default_max_packet_bytes);

    // Appends received bytes (copied). Views handed out by next() become invalid.
    void feed(std::string_view bytes);

    ReadStatus next(Packet& packet);

    // Changes the limit for packets not yet started (e.g. a smaller one before CONNECT).
    void set_max_packet_bytes(size_t max_packet_bytes) { m_max_packet_bytes = max_packet_bytes; }
    size_t max_packet_bytes() const { return m_max_packet_bytes; }

    std::optional<ParseError> error() const { return m_error; }
    // The type of the packet that failed, when its fixed header was readable.
    std::optional<PacketType> error_packet_type() const { return m_error_type; }
    size_t buffered_bytes() const { return m_buffer.size() - m_start; }

private:
    std::string m_buffer;
    size_t m_start = 0;  // bytes before this were returned as packets
    size_t m_max_packet_bytes;
    std::optional<ParseError> m_error;
    std::optional<PacketType> m_error_type;
};

// ---- Encoding ----------------------------------------------------------------------------
// Each appends one packet to `out`. The caller passes valid values (topics checked with
// topic.h, packet ids non-zero where needed, strings under 64 KiB, packets under 256 MiB);
// these are our invariants and are asserted, not reported.

void encode(std::string& out, const Connect& packet);
void encode(std::string& out, const Connack& packet);
void encode(std::string& out, const Publish& packet);
void encode(std::string& out, const Puback& packet);
void encode(std::string& out, const Pubrec& packet);
void encode(std::string& out, const Pubrel& packet);
void encode(std::string& out, const Pubcomp& packet);
void encode(std::string& out, const Subscribe& packet);
void encode(std::string& out, const Suback& packet);
void encode(std::string& out, const Unsubscribe& packet);
void encode(std::string& out, const Unsuback& packet);
void encode(std::string& out, const Pingreq& packet);
void encode(std::string& out, const Pingresp& packet);
void encode(std::string& out, const Disconnect& packet);
void encode(std::string& out, const Packet& packet);

}  // namespace mh::mqtt
