// Fuzzes what mh-endpoint reads of commands and of devices' replies (lib/command): the input
// as a JSON line (as MQTT and HTTPS replies arrive) and as raw frame words (the command input
// and native replies). prepare() must refuse or give a frame that reads back with the same
// correlation id; a reply's correlation id must pass its own check; every status built
// from either must be a readable frame.
#include "command/command.h"
#include "json/json_codec.h"

#include <capnp/serialize.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using namespace mh;

constexpr int64_t k_now_ns = 1'700'000'000'000'000'000;
constexpr size_t k_limit_bytes = 1 << 16;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "command_fuzz: %s\n", what);
    std::abort();
}

void check_status(const command::Ref& ref, const command::StatusDetail& detail) {
    std::vector<std::byte> out;
    command::build_status(ref, command::Status::acknowledged, k_now_ns, MessageId{}, detail, out);
    std::vector<capnp::word> words(out.size() / sizeof(capnp::word));
    std::memcpy(words.data(), out.data(), out.size());
    if (wire::check_frame({words.data(), words.size()}, {k_limit_bytes * 4})) fail("a status that does not read");
}

void exercise(const wire::Frame& frame, IdGenerator& ids) {
    wire::FrameLimits limits{k_limit_bytes};
    command::Prepared p = command::prepare(frame, k_now_ns, 1'000'000'000, limits, ids);
    if (p.refusal.empty()) {
        if (p.frame.empty()) fail("ready without a frame");
        std::vector<capnp::word> words(p.frame.size() / sizeof(capnp::word));
        std::memcpy(words.data(), p.frame.data(), p.frame.size());
        wire::Frame ready{words.data(), words.size()};
        if (wire::check_frame(ready, {k_limit_bytes * 2})) fail("a prepared command that does not read");
        if (command::describe(ready).correlation_id != p.ref.correlation_id) fail("the correlation id changed");
        if (command::check_correlation_id(p.ref.correlation_id)) fail("a bad correlation id passed");
    } else if (!p.frame.empty()) {
        fail("refused with a frame");
    }
    check_status(p.ref, {});
    if (wire::check_frame(frame, limits)) return;
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count), wire::reader_options(limits));
    auto reply = reader.getRoot<schema::Message>();
    command::ReplyId id = command::reply_id(reply);
    if (id.refusal.empty() && command::check_correlation_id(id.correlation_id)) fail("a bad reply id passed");
    command::StatusDetail detail;
    detail.matched = id.refusal.empty();
    detail.reply = reply;
    check_status({id.correlation_id, "gw", "src", "name"}, detail);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static JsonDecoder decoder;
    static IdGenerator ids(7);
    std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::byte> decoded;
    if (!decoder.decode(input, decoded)) {
        std::vector<capnp::word> words(decoded.size() / sizeof(capnp::word));
        std::memcpy(words.data(), decoded.data(), decoded.size());
        exercise({words.data(), words.size()}, ids);
    }
    std::vector<capnp::word> raw(size / sizeof(capnp::word));
    if (!raw.empty()) {
        std::memcpy(raw.data(), data, raw.size() * sizeof(capnp::word));
        exercise({raw.data(), raw.size()}, ids);
    }
    return 0;
}
