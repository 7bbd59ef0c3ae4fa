// Fuzzes the channel manifest loader with any text as a manifest (manifests are written by
// people and copied around). Whatever the input: no crash, every error has a message and a
// place inside the text (or none), and what loads without errors can be ordered, drawn,
// and split and quoted back to the same words.
#include "manifest/graph.h"
#include "manifest/manifest.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "manifest_fuzz: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace mh::manifest;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    LoadResult result = load(text, "fuzz");
    size_t lines = 1;
    for (char c : text) lines += c == '\n';
    for (const auto& error : result.errors) {
        if (error.message.empty()) fail("an error without a message");
        if (error.where.line > lines + 1) fail("an error placed after the end of the text");
        (void)format_diagnostic("fuzz.toml", error);
    }
    if (result.ok()) {
        const Manifest& m = result.manifest;
        if (m.topological_order().size() != m.stages.size()) fail("a manifest without errors that cannot be ordered");
        (void)to_dot(m);
        (void)to_text(m);
        for (const auto& stage : m.stages) {
            auto again = split_command(join_command(stage.argv));
            if (!again || *again != stage.argv) fail("split(join(argv)) != argv");
        }
    }
    // The run splitter alone, on the raw text.
    SplitError error;
    if (!split_command(text, &error) && error.offset > text.size()) fail("a split error beyond the text");
    return 0;
}
