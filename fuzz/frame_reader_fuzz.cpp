// Fuzzes what reads frames from outside: bytes -> scan_frame -> check_frame -> a read of
// every part of each frame, then the JSON encoder (its direct read of the frame's words
// checked against Cap'n Proto's reader) and the text form on it. Nothing may crash, leak,
// read out of bounds or hit undefined behaviour, whatever the bytes.
#include "json/json_codec.h"
#include "text/text_sink.h"
#include "wire/frame.h"
#include "wire/frame_opener.h"
#include "wire/message_view.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using namespace mh;

// Touches every byte a reader can reach, so that the sanitizers see each access.
uint64_t walk(schema::Message::Reader message) {
    uint64_t sum = 0;
    for (auto byte : message.getId()) sum += byte;
    sum += static_cast<uint64_t>(message.getTime()) + static_cast<uint64_t>(message.getIngested());
    for (char c : message.getSource()) sum += static_cast<unsigned char>(c);
    for (char c : message.getGateway()) sum += static_cast<unsigned char>(c);
    for (char c : message.getKind()) sum += static_cast<unsigned char>(c);
    for (auto field : message.getFields()) {
        for (char c : field.getName()) sum += static_cast<unsigned char>(c);
        auto value = field.getValue();
        switch (value.which()) {
            case schema::Field::Value::FLOAT:
                sum += static_cast<uint64_t>(value.getFloat() != 0);
                break;
            case schema::Field::Value::INT:
                sum += static_cast<uint64_t>(value.getInt());
                break;
            case schema::Field::Value::TEXT:
                for (char c : value.getText()) sum += static_cast<unsigned char>(c);
                break;
            case schema::Field::Value::BOOL:
                sum += value.getBool();
                break;
            case schema::Field::Value::JSON:
                for (char c : value.getJson()) sum += static_cast<unsigned char>(c);
                break;
        }
    }
    for (auto byte : message.getBody()) sum += byte;
    if (message.getControl().isBarrier()) sum += message.getControl().getBarrier().getNumber();
    return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static JsonEncoder encoder;
    static std::string line;
    const wire::FrameLimits limits{1 << 16};

    // Frames are read from word-aligned memory, as every reader in mh arranges.
    std::vector<capnp::word> words(size / sizeof(capnp::word) + 1);
    std::memcpy(words.data(), data, size);
    std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(words.data()), size);

    volatile uint64_t sink = 0;
    for (;;) {
        wire::FrameScan scan = wire::scan_frame(bytes, limits);
        if (scan.status != wire::ScanStatus::complete) break;
        wire::Frame frame{reinterpret_cast<const capnp::word*>(bytes.data()),
                          scan.frame_bytes / sizeof(capnp::word)};
        bytes = bytes.subspan(scan.frame_bytes);

        // The opener's own walk must agree with Cap'n Proto's checked reader: what it calls
        // sound, totalSize() walks without an exception; and a read of whatever it opened
        // stays in bounds (the sanitizers watch), throwing at worst for a pointer's kind.
        const char* reason = nullptr;
        if (wire::check_layout(frame, wire::reader_options(limits), &reason) == wire::Layout::sound) {
            try {
                capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                                     wire::reader_options(limits));
                (void)reader.getRoot<capnp::AnyPointer>().targetSize();
            } catch (const kj::Exception& e) {
                if (e.getDescription().startsWith("Message contains out-of-bounds") ||
                    e.getDescription().startsWith("Exceeded message traversal limit"))
                    std::abort();
            }
        }
        static wire::FrameOpener opener(limits);
        if (!opener.open(frame)) {
            try {
                sink = sink + walk(opener.message());
            } catch (const kj::Exception&) {
            }
        }

        // mh's own layout, which check_frame() passes without a walk, must be one that the
        // opener's walk and check_message() pass too.
        if (wire::read_message_view(frame, nullptr)) {
            static wire::FrameOpener checked(limits);
            if (checked.open(frame) || wire::check_message(checked.message())) std::abort();
        }
        // The encoder's direct read takes only frames Cap'n Proto reads without complaint,
        // and must write what the checked path writes.
        static std::string direct;
        direct.clear();
        bool read_directly = encoder.encode_frame(frame, direct);
        if (!read_directly && !direct.empty()) std::abort();

        if (wire::check_frame(frame, limits)) {  // garbled: refused with a reason
            if (read_directly) std::abort();
            continue;
        }
        try {
            capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                                 wire::reader_options(limits));
            auto message = reader.getRoot<schema::Message>();
            sink = sink + walk(message);
            line.clear();
            TextSink::format(message, line);
            line.clear();
            encoder.encode(message, line);
        } catch (const kj::Exception&) {
            // A well-formed frame may still hold a pointer of the wrong kind for the schema:
            // Cap'n Proto refuses it with an exception, which the sinks count.
            if (read_directly) std::abort();
            continue;
        }
        if (read_directly && direct != line) std::abort();
        // One line per message, whatever the frame held.
        if (line.empty() || line.back() != '\n' || line.find('\n') != line.size() - 1) std::abort();
    }
    return 0;
}
