#include "mqtt/packet.h"

#include "mqtt/topic.h"

#include <cassert>

namespace mh::mqtt {

const char* packet_name(PacketType type) {
    switch (type) {
        case PacketType::connect: return "CONNECT";
        case PacketType::connack: return "CONNACK";
        case PacketType::publish: return "PUBLISH";
        case PacketType::puback: return "PUBACK";
        case PacketType::pubrec: return "PUBREC";
        case PacketType::pubrel: return "PUBREL";
        case PacketType::pubcomp: return "PUBCOMP";
        case PacketType::subscribe: return "SUBSCRIBE";
        case PacketType::suback: return "SUBACK";
        case PacketType::unsubscribe: return "UNSUBSCRIBE";
        case PacketType::unsuback: return "UNSUBACK";
        case PacketType::pingreq: return "PINGREQ";
        case PacketType::pingresp: return "PINGRESP";
        case PacketType::disconnect: return "DISCONNECT";
    }
    return "?";
}

const char* describe(ParseError error) {
    switch (error) {
        case ParseError::bad_remaining_length: return "remaining length longer than 4 bytes";
        case ParseError::too_large: return "packet larger than the limit";
        case ParseError::reserved_packet_type: return "reserved packet type";
        case ParseError::bad_header_flags: return "invalid fixed header flags";
        case ParseError::truncated: return "a field runs past the end of the packet";
        case ParseError::trailing_bytes: return "bytes after the last field of the packet";
        case ParseError::bad_protocol_name: return "protocol name is not MQTT";
        case ParseError::unsupported_protocol_level: return "unsupported protocol level (only MQTT 3.1.1)";
        case ParseError::bad_connect_flags: return "invalid CONNECT flags";
        case ParseError::bad_utf8: return "string is not UTF-8 or contains U+0000";
        case ParseError::bad_topic_name: return "invalid topic name";
        case ParseError::bad_topic_filter: return "invalid topic filter";
        case ParseError::zero_packet_id: return "packet identifier 0";
        case ParseError::no_topic_filters: return "no topic filter in the packet";
        case ParseError::bad_subscribe_options: return "invalid requested QoS";
        case ParseError::bad_return_code: return "invalid return code";
    }
    return "malformed packet";
}

PacketType packet_type(const Packet& packet) {
    // The variant's alternatives are in packet type order, CONNECT = 1 first.
    return static_cast<PacketType>(packet.index() + 1);
}

// ---- Decoding ----------------------------------------------------------------------------

HeaderScan scan_header(std::string_view bytes, size_t max_packet_bytes) {
    HeaderScan scan;
    if (bytes.empty()) return scan;
    auto first = static_cast<uint8_t>(bytes[0]);
    uint8_t type = first >> 4;
    if (type == 0 || type == 15) {
        scan.status = HeaderScan::failed;
        scan.error = ParseError::reserved_packet_type;
        return scan;
    }
    scan.type = static_cast<PacketType>(type);
    scan.flags = first & 0x0f;
    size_t remaining = 0;
    size_t i = 1;
    for (int shift = 0;; shift += 7, ++i) {
        if (i == k_max_fixed_header_bytes) {
            scan.status = HeaderScan::failed;
            scan.error = ParseError::bad_remaining_length;
            return scan;
        }
        if (i >= bytes.size()) return scan;  // incomplete
        auto byte = static_cast<uint8_t>(bytes[i]);
        remaining |= static_cast<size_t>(byte & 0x7f) << shift;
        if (!(byte & 0x80)) break;
    }
    scan.header_bytes = i + 1;
    scan.packet_bytes = scan.header_bytes + remaining;
    if (scan.packet_bytes > max_packet_bytes) {
        scan.status = HeaderScan::failed;
        scan.error = ParseError::too_large;
        return scan;
    }
    scan.status = HeaderScan::complete;
    return scan;
}

namespace {

// Reads the fields of one packet body, remembering the first error.
class Cursor {
public:
    explicit Cursor(std::string_view body) : m_body(body) {}

    bool ok() const { return !m_error; }
    std::optional<ParseError> error() const { return m_error; }
    void fail(ParseError error) {
        if (!m_error) m_error = error;
    }
    bool at_end() const { return m_at == m_body.size(); }
    std::string_view rest() {
        auto rest = m_body.substr(m_at);
        m_at = m_body.size();
        return rest;
    }

    uint8_t u8() {
        if (m_error || m_at + 1 > m_body.size()) return fail(ParseError::truncated), 0;
        return static_cast<uint8_t>(m_body[m_at++]);
    }
    uint16_t u16() {
        if (m_error || m_at + 2 > m_body.size()) return fail(ParseError::truncated), 0;
        auto value = static_cast<uint16_t>(static_cast<uint8_t>(m_body[m_at]) << 8 |
                                           static_cast<uint8_t>(m_body[m_at + 1]));
        m_at += 2;
        return value;
    }
    uint16_t packet_id() {
        uint16_t id = u16();
        if (ok() && id == 0) fail(ParseError::zero_packet_id);
        return id;
    }
    // Length-prefixed binary data.
    std::string_view binary() {
        uint16_t length = u16();
        if (m_error || m_at + length > m_body.size()) return fail(ParseError::truncated), "";
        auto value = m_body.substr(m_at, length);
        m_at += length;
        return value;
    }
    // Length-prefixed UTF-8 text without U+0000 [MQTT-1.5.3-1, -2].
    std::string_view text() {
        auto value = binary();
        if (ok() && check_text(value, true)) fail(ParseError::bad_utf8);
        return value;
    }
    void expect_end() {
        if (ok() && !at_end()) fail(ParseError::trailing_bytes);
    }

private:
    std::string_view m_body;
    size_t m_at = 0;
    std::optional<ParseError> m_error;
};

bool valid_qos(uint8_t qos) { return qos <= 2; }

// Non-empty, printable ASCII, no '+' or '#': passes check_text() and check_topic_name().
bool plain_topic_name(std::string_view topic) {
    if (topic.empty()) return false;
    bool bad = false;
    for (unsigned char c : topic) bad |= c < 0x20 || c > 0x7e || c == '+' || c == '#';
    return !bad;
}

void decode_connect(Cursor& in, Connect& connect) {
    auto name = in.binary();
    uint8_t level = in.u8();
    if (!in.ok()) return;
    if (name != "MQTT" && name != "MQIsdp") return in.fail(ParseError::bad_protocol_name);
    connect.protocol_level = level;
    // MQTT 5 adds properties after the keep-alive: nothing beyond the level is read for it.
    if (name != "MQTT" || level != k_protocol_level_3_1_1)
        return in.fail(ParseError::unsupported_protocol_level);
    uint8_t flags = in.u8();
    connect.keep_alive_s = in.u16();
    if (!in.ok()) return;
    bool user = flags & 0x80, password = flags & 0x40, will_retain = flags & 0x20;
    uint8_t will_qos = (flags >> 3) & 0x03;
    bool will = flags & 0x04;
    connect.clean_session = flags & 0x02;
    if ((flags & 0x01) || !valid_qos(will_qos) || (!will && (will_qos || will_retain)) ||
        (password && !user))
        return in.fail(ParseError::bad_connect_flags);
    connect.client_id = in.text();
    connect.will.reset();
    if (will) {
        Will w;
        w.topic = in.text();
        if (in.ok() && check_topic_name(w.topic)) return in.fail(ParseError::bad_topic_name);
        w.payload = in.binary();
        w.qos = static_cast<QoS>(will_qos);
        w.retain = will_retain;
        connect.will = w;
    }
    connect.username.reset();
    connect.password.reset();
    if (user) connect.username = in.text();
    if (password) connect.password = in.binary();
    in.expect_end();
}

void decode_publish(Cursor& in, uint8_t flags, Publish& publish) {
    publish.dup = flags & 0x08;
    publish.qos = static_cast<QoS>((flags >> 1) & 0x03);
    publish.retain = flags & 0x01;
    // Most topic names are printable ASCII without wildcards: valid text and a valid name,
    // judged in one pass. Anything else gets the full checks and their exact errors.
    publish.topic = in.binary();
    if (in.ok() && !plain_topic_name(publish.topic)) {
        if (check_text(publish.topic, true)) return in.fail(ParseError::bad_utf8);
        if (check_topic_name(publish.topic)) return in.fail(ParseError::bad_topic_name);
    }
    publish.packet_id = publish.qos == QoS::at_most_once ? 0 : in.packet_id();
    if (in.ok()) publish.payload = in.rest();
}

void decode_subscribe(Cursor& in, Subscribe& subscribe) {
    subscribe.packet_id = in.packet_id();
    subscribe.topics.clear();
    while (in.ok() && !in.at_end()) {
        TopicRequest request;
        request.filter = in.text();
        if (in.ok() && check_topic_filter(request.filter))
            return in.fail(ParseError::bad_topic_filter);
        uint8_t options = in.u8();
        if (in.ok() && !valid_qos(options)) return in.fail(ParseError::bad_subscribe_options);
        request.qos = static_cast<QoS>(options);
        subscribe.topics.push_back(request);
    }
    if (in.ok() && subscribe.topics.empty()) in.fail(ParseError::no_topic_filters);
}

void decode_suback(Cursor& in, Suback& suback) {
    suback.packet_id = in.packet_id();
    suback.return_codes.clear();
    while (in.ok() && !in.at_end()) {
        uint8_t code = in.u8();
        if (!valid_qos(code) && code != k_suback_failure) return in.fail(ParseError::bad_return_code);
        suback.return_codes.push_back(code);
    }
    if (in.ok() && suback.return_codes.empty()) in.fail(ParseError::no_topic_filters);
}

void decode_unsubscribe(Cursor& in, Unsubscribe& unsubscribe) {
    unsubscribe.packet_id = in.packet_id();
    unsubscribe.filters.clear();
    while (in.ok() && !in.at_end()) {
        auto filter = in.text();
        if (in.ok() && check_topic_filter(filter)) return in.fail(ParseError::bad_topic_filter);
        unsubscribe.filters.push_back(filter);
    }
    if (in.ok() && unsubscribe.filters.empty()) in.fail(ParseError::no_topic_filters);
}

// Resets `packet` to the alternative T, reusing it (and its vectors' capacity) when it
// already holds one.
template <typename T>
T& reset_to(Packet& packet) {
    if (auto* existing = std::get_if<T>(&packet)) return *existing;
    return packet.emplace<T>();
}

template <typename T>
void decode_id_only(Cursor& in, Packet& packet) {
    reset_to<T>(packet).packet_id = in.packet_id();
    in.expect_end();
}

template <typename T>
void decode_empty(Cursor& in, Packet& packet) {
    reset_to<T>(packet);
    in.expect_end();
}

// The fixed-header flags each type must carry; PUBLISH's are checked on their own.
bool flags_valid(PacketType type, uint8_t flags) {
    switch (type) {
        case PacketType::publish: {
            uint8_t qos = (flags >> 1) & 0x03;
            return qos != 3 && !(qos == 0 && (flags & 0x08));  // [MQTT-3.3.1-2, -4]
        }
        case PacketType::pubrel:
        case PacketType::subscribe:
        case PacketType::unsubscribe: return flags == 0x02;  // [MQTT-3.6.1-1, 3.8.1-1, 3.10.1-1]
        default: return flags == 0;
    }
}

}  // namespace

std::optional<ParseError> decode_packet(std::string_view bytes, const HeaderScan& header,
                                        Packet& packet) {
    assert(header.status == HeaderScan::complete && bytes.size() == header.packet_bytes);
    if (!flags_valid(header.type, header.flags)) return ParseError::bad_header_flags;
    Cursor in(bytes.substr(header.header_bytes));
    switch (header.type) {
        case PacketType::connect: decode_connect(in, reset_to<Connect>(packet)); break;
        case PacketType::connack: {
            auto& connack = reset_to<Connack>(packet);
            uint8_t flags = in.u8();
            uint8_t code = in.u8();
            in.expect_end();
            if (in.ok() && (flags & 0xfe)) return ParseError::bad_header_flags;
            if (in.ok() && code > static_cast<uint8_t>(ConnectCode::not_authorized))
                return ParseError::bad_return_code;
            connack.session_present = flags & 0x01;
            connack.code = static_cast<ConnectCode>(code);
            break;
        }
        case PacketType::publish: decode_publish(in, header.flags, reset_to<Publish>(packet)); break;
        case PacketType::puback: decode_id_only<Puback>(in, packet); break;
        case PacketType::pubrec: decode_id_only<Pubrec>(in, packet); break;
        case PacketType::pubrel: decode_id_only<Pubrel>(in, packet); break;
        case PacketType::pubcomp: decode_id_only<Pubcomp>(in, packet); break;
        case PacketType::subscribe: decode_subscribe(in, reset_to<Subscribe>(packet)); break;
        case PacketType::suback: decode_suback(in, reset_to<Suback>(packet)); break;
        case PacketType::unsubscribe: decode_unsubscribe(in, reset_to<Unsubscribe>(packet)); break;
        case PacketType::unsuback: decode_id_only<Unsuback>(in, packet); break;
        case PacketType::pingreq: decode_empty<Pingreq>(in, packet); break;
        case PacketType::pingresp: decode_empty<Pingresp>(in, packet); break;
        case PacketType::disconnect: decode_empty<Disconnect>(in, packet); break;
    }
    return in.error();
}

PacketReader::PacketReader(size_t max_packet_bytes) : m_max_packet_bytes(max_packet_bytes) {}

void PacketReader::feed(std::string_view bytes) {
    if (m_error) return;  // nothing more is read from a broken stream
    // Drop what was handed out; keep a small buffer when idle, not the largest packet's.
    if (m_start == m_buffer.size()) {
        m_buffer.clear();
        if (m_buffer.capacity() > k_idle_buffer_bytes) m_buffer.shrink_to_fit();
    } else if (m_start > 0) {
        m_buffer.erase(0, m_start);
    }
    m_start = 0;
    m_buffer.append(bytes);
}

ReadStatus PacketReader::next(Packet& packet) {
    if (m_error) return ReadStatus::error;
    if (m_start > 0 && m_start == m_buffer.size()) {
        // All handed out: an idle connection keeps a small buffer, not its largest read.
        m_buffer.clear();
        m_start = 0;
        if (m_buffer.capacity() > k_idle_buffer_bytes) m_buffer.shrink_to_fit();
        return ReadStatus::need_more;
    }
    std::string_view available(m_buffer.data() + m_start, m_buffer.size() - m_start);
    HeaderScan header = scan_header(available, m_max_packet_bytes);
    if (header.status == HeaderScan::incomplete) return ReadStatus::need_more;
    if (header.status == HeaderScan::failed) {
        m_error = header.error;
        if (header.error != ParseError::reserved_packet_type) m_error_type = header.type;
        return ReadStatus::error;
    }
    if (available.size() < header.packet_bytes) {
        // Room for the rest now, so the body arrives without reallocations on the way.
        m_buffer.reserve(m_start + header.packet_bytes);
        return ReadStatus::need_more;
    }
    if (auto error = decode_packet(available.substr(0, header.packet_bytes), header, packet)) {
        m_error = error;
        m_error_type = header.type;
        return ReadStatus::error;
    }
    m_start += header.packet_bytes;
    return ReadStatus::packet;
}

// ---- Encoding ----------------------------------------------------------------------------

namespace {

void put_u16(std::string& out, uint16_t value) {
    out.push_back(static_cast<char>(value >> 8));
    out.push_back(static_cast<char>(value & 0xff));
}

void put_string(std::string& out, std::string_view text) {
    assert(text.size() <= k_max_string_bytes);
    put_u16(out, static_cast<uint16_t>(text.size()));
    out.append(text);
}

void put_header(std::string& out, PacketType type, uint8_t flags, size_t remaining) {
    assert(remaining <= k_max_remaining_length);
    out.push_back(static_cast<char>(static_cast<uint8_t>(type) << 4 | flags));
    do {
        uint8_t byte = remaining & 0x7f;
        remaining >>= 7;
        if (remaining) byte |= 0x80;
        out.push_back(static_cast<char>(byte));
    } while (remaining);
}

template <PacketType T>
void encode_id_only(std::string& out, const PacketIdOnly<T>& packet, uint8_t flags = 0) {
    assert(packet.packet_id != 0);
    put_header(out, T, flags, 2);
    put_u16(out, packet.packet_id);
}

}  // namespace

void encode(std::string& out, const Connect& packet) {
    size_t remaining = 2 + 4 + 1 + 1 + 2 + 2 + packet.client_id.size();
    if (packet.will) remaining += 2 + packet.will->topic.size() + 2 + packet.will->payload.size();
    if (packet.username) remaining += 2 + packet.username->size();
    if (packet.password) remaining += 2 + packet.password->size();
    uint8_t flags = packet.clean_session ? 0x02 : 0;
    if (packet.will) {
        flags |= 0x04 | static_cast<uint8_t>(packet.will->qos) << 3;
        if (packet.will->retain) flags |= 0x20;
    }
    if (packet.username) flags |= 0x80;
    if (packet.password) flags |= 0x40;
    put_header(out, PacketType::connect, 0, remaining);
    put_string(out, "MQTT");
    out.push_back(static_cast<char>(packet.protocol_level));
    out.push_back(static_cast<char>(flags));
    put_u16(out, packet.keep_alive_s);
    put_string(out, packet.client_id);
    if (packet.will) {
        put_string(out, packet.will->topic);
        put_string(out, packet.will->payload);
    }
    if (packet.username) put_string(out, *packet.username);
    if (packet.password) put_string(out, *packet.password);
}

void encode(std::string& out, const Connack& packet) {
    put_header(out, PacketType::connack, 0, 2);
    out.push_back(packet.session_present ? 1 : 0);
    out.push_back(static_cast<char>(packet.code));
}

void encode(std::string& out, const Publish& packet) {
    bool with_id = packet.qos != QoS::at_most_once;
    assert(!with_id || packet.packet_id != 0);
    size_t remaining = 2 + packet.topic.size() + (with_id ? 2 : 0) + packet.payload.size();
    uint8_t flags = static_cast<uint8_t>(packet.qos) << 1;
    if (packet.dup) flags |= 0x08;
    if (packet.retain) flags |= 0x01;
    put_header(out, PacketType::publish, flags, remaining);
    put_string(out, packet.topic);
    if (with_id) put_u16(out, packet.packet_id);
    out.append(packet.payload);
}

void encode(std::string& out, const Puback& packet) { encode_id_only(out, packet); }
void encode(std::string& out, const Pubrec& packet) { encode_id_only(out, packet); }
void encode(std::string& out, const Pubrel& packet) { encode_id_only(out, packet, 0x02); }
void encode(std::string& out, const Pubcomp& packet) { encode_id_only(out, packet); }
void encode(std::string& out, const Unsuback& packet) { encode_id_only(out, packet); }

void encode(std::string& out, const Subscribe& packet) {
    assert(packet.packet_id != 0 && !packet.topics.empty());
    size_t remaining = 2;
    for (auto& topic : packet.topics) remaining += 2 + topic.filter.size() + 1;
    put_header(out, PacketType::subscribe, 0x02, remaining);
    put_u16(out, packet.packet_id);
    for (auto& topic : packet.topics) {
        put_string(out, topic.filter);
        out.push_back(static_cast<char>(topic.qos));
    }
}

void encode(std::string& out, const Suback& packet) {
    assert(packet.packet_id != 0 && !packet.return_codes.empty());
    put_header(out, PacketType::suback, 0, 2 + packet.return_codes.size());
    put_u16(out, packet.packet_id);
    for (uint8_t code : packet.return_codes) out.push_back(static_cast<char>(code));
}

void encode(std::string& out, const Unsubscribe& packet) {
    assert(packet.packet_id != 0 && !packet.filters.empty());
    size_t remaining = 2;
    for (auto filter : packet.filters) remaining += 2 + filter.size();
    put_header(out, PacketType::unsubscribe, 0x02, remaining);
    put_u16(out, packet.packet_id);
    for (auto filter : packet.filters) put_string(out, filter);
}

void encode(std::string& out, const Pingreq&) { put_header(out, PacketType::pingreq, 0, 0); }
void encode(std::string& out, const Pingresp&) { put_header(out, PacketType::pingresp, 0, 0); }
void encode(std::string& out, const Disconnect&) { put_header(out, PacketType::disconnect, 0, 0); }

void encode(std::string& out, const Packet& packet) {
    std::visit([&out](const auto& p) { encode(out, p); }, packet);
}

}  // namespace mh::mqtt
