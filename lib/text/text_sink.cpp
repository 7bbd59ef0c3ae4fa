#include "text/text_sink.h"

#include "json/json_codec.h"
#include "message/time.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <charconv>
#include <cstring>

namespace mh {
namespace {

std::string_view view(capnp::Text::Reader text) { return {text.begin(), text.size()}; }

// A bare word: as it is, unless it holds what would garble a terminal (controls, invalid
// UTF-8), which gets JSON's escapes.
void append_word(std::string& out, std::string_view text) {
    if (text.empty()) {
        out.push_back('-');
        return;
    }
    bool plain = true;
    for (unsigned char c : text) plain &= c >= 0x20 && c != 0x7f && c < 0x80;
    if (plain) {
        out += text;
        return;
    }
    size_t start = out.size();
    json::append_string(out, text, json::NonAscii::keep);
    // Keep the escapes, drop the quotes.
    out.erase(start, 1);
    out.pop_back();
}

void append_time(std::string& out, int64_t ns) {
    if (ns == 0) {
        out.push_back('-');
        return;
    }
    char buffer[k_rfc3339_max_chars];
    out.append(buffer, format_rfc3339(ns, buffer));
}

}  // namespace

TextSink::TextSink(int fd, wire::FrameLimits limits) : m_output(fd), m_limits(limits) {}

void TextSink::format(schema::Message::Reader message, std::string& out) {
    if (message.getControl().isBarrier()) {
        auto barrier = message.getControl().getBarrier();
        char buffer[24];
        out += "--- barrier ";
        out.append(buffer, std::to_chars(buffer, buffer + sizeof(buffer), barrier.getNumber()).ptr);
        out += " at ";
        append_time(out, barrier.getTime());
        out += " ---";
        return;
    }
    append_time(out, message.getTime());
    out.push_back(' ');
    append_word(out, view(message.getSource()));
    out.push_back(' ');
    append_word(out, view(message.getGateway()));
    out.push_back(' ');
    append_word(out, view(message.getKind()));
    for (auto field : message.getFields()) {
        out.push_back(' ');
        append_word(out, view(field.getName()));
        out.push_back('=');
        auto value = field.getValue();
        switch (value.which()) {
            case schema::Field::Value::FLOAT:
                json::append_float(out, value.getFloat());  // "nan" and "inf" are fine for people
                break;
            case schema::Field::Value::INT: {
                char buffer[24];
                out.append(buffer,
                           std::to_chars(buffer, buffer + sizeof(buffer), value.getInt()).ptr);
                break;
            }
            case schema::Field::Value::TEXT:
                json::append_string(out, view(value.getText()), json::NonAscii::keep);
                break;
            case schema::Field::Value::BOOL:
                out += value.getBool() ? "true" : "false";
                break;
            case schema::Field::Value::JSON:
                append_word(out, view(value.getJson()));
                break;
            default:
                out.push_back('?');
        }
    }
    if (size_t size = message.getBody().size()) {
        char buffer[24];
        out += " body=";
        out.append(buffer, std::to_chars(buffer, buffer + sizeof(buffer), size).ptr);
        out.push_back('B');
    }
}

void TextSink::write(const wire::Frame& frame) {
    m_line.clear();
    try {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                             wire::reader_options(m_limits));
        format(reader.getRoot<schema::Message>(), m_line);
    } catch (const kj::Exception& e) {
        ++m_rejected;
        m_line = "--- unreadable frame: ";
        append_word(m_line, e.getDescription().cStr());
        m_line += " ---";
    }
    m_line.push_back('\n');
    m_output.append(m_line);
}

}  // namespace mh
