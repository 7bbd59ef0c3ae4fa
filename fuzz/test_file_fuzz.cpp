// Fuzzes the loader of a channel's test file (mh-route test) with any text, against a fixed
// small channel. Whatever the input: no crash, every error has a message and a place inside
// the text (or none), and what loads without errors names only stages of the channel and
// holds messages whose frames read back.
#include "manifest/manifest.h"
#include "manifest/test_file.h"

#include "wire/frame.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "test_file_fuzz: %s\n", what);
    std::abort();
}

const mh::manifest::Manifest& channel() {
    static const mh::manifest::Manifest m = mh::manifest::load(R"(
[stage.sensors]
run = "mh-gen"
[stage.check]
run = "mh-filter --alert 'hot=temperature > 8'"
from = ["sensors"]
[stage.alerts]
run = "mh-store append --db alerts"
from = [{ stage = "check", when = 'kind == "alert"' }]
)",
                                                                "fuzz")
                                                .manifest;
    return m;
}

void check_messages(const std::vector<mh::manifest::TestMessage>& messages) {
    for (const auto& message : messages) {
        mh::wire::Frame frame{message.frame_words(), message.frame_word_count()};
        if (mh::wire::check_frame(frame, {})) fail("a loaded message whose frame does not read back");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace mh::manifest;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    const Manifest& m = channel();
    TestLoadResult result = load_tests(text, m);
    size_t lines = 1;
    for (char c : text) lines += c == '\n';
    for (const auto& error : result.errors) {
        if (error.message.empty()) fail("an error without a message");
        if (error.where.line > lines + 1) fail("an error placed after the end of the text");
        (void)format_diagnostic("fuzz.test.toml", error);
    }
    if (result.ok()) {
        for (const auto& test : result.tests) {
            for (const auto& input : test.inputs) {
                if (!m.find_stage(input.stage)) fail("an input for a stage that is not in the channel");
                check_messages(input.messages);
            }
            for (const auto& expect : test.expectations) {
                if (!m.find_stage(expect.stage)) fail("an expectation on a stage that is not in the channel");
                check_messages(expect.messages);
                check_messages(expect.contains);
                check_messages(expect.absent);
            }
        }
    }
    // The JSON-lines reader of input files, on the raw text.
    std::vector<TestMessage> messages;
    (void)decode_json_lines(text, messages);
    check_messages(messages);
    return 0;
}
