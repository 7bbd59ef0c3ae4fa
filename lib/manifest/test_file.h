// A channel's test file (man 1 mh-route, "TEST FILES"): TOML kept beside the manifest, each
// [[test]] giving messages that come out of some stages (which are then not run) and what
// must come out of, or arrive at, other stages. Loading checks it against the manifest and
// collects every problem with its line and column, as the manifest loader does. Messages are
// turned into frames here (lib/json's mapping), so that a bad one is found before anything
// runs. No files, processes or sockets: this module is fuzzed.
#pragma once

#include "manifest/manifest.h"

#include <capnp/common.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::manifest {

constexpr size_t k_max_tests = 1000;
constexpr size_t k_max_test_messages = 100'000;  // in one list or input file
constexpr int64_t k_default_stage_timeout_ns = 10'000'000'000;
constexpr double k_default_tolerance = 1e-9;  // relative, for numbers

// One message of a test, as a frame (in 8-byte words, aligned, so it can be read in place;
// capnp::word itself cannot live in a vector that copies), and as the JSON text it was
// written as, for reports.
struct TestMessage {
    std::vector<uint64_t> words;
    std::string json;
    Location where;

    const capnp::word* frame_words() const { return reinterpret_cast<const capnp::word*>(words.data()); }
    size_t frame_word_count() const { return words.size(); }
};

// Messages that come out of `stage` in the test, in place of running it.
struct TestInput {
    std::string stage;
    Location where;
    std::vector<TestMessage> messages;
    std::string file;  // JSON lines, relative to the test file's directory ("" = none)
    Location file_where;
};

// Where an expectation looks: what a stage writes, or what arrives at it (its inputs merged,
// after the edges' when conditions).
enum class At { out, in };

struct Expectation {
    std::string stage;
    Location where;
    At at = At::out;
    std::string where_expr;  // only the messages for which it holds are looked at ("" = all)
    Location where_expr_where;
    bool has_messages = false;
    std::vector<TestMessage> messages;  // exactly these (in order unless !ordered)
    std::vector<TestMessage> contains;  // each matches a message of its own; others may come
    std::vector<TestMessage> absent;    // no message matches any of these
    std::optional<uint64_t> count;
    bool ordered = true;
    bool exact = false;  // a message may have no field that the expected one does not give
    double tolerance = k_default_tolerance;
};

struct ChannelTest {
    std::string name;
    Location where;
    std::optional<int64_t> now_ns;  // MH_NOW for its stages
    std::vector<std::string> skip;  // stages not run (what arrives at them is still seen)
    int64_t timeout_ns = k_default_stage_timeout_ns;
    std::vector<TestInput> inputs;
    std::vector<Expectation> expectations;
};

struct TestLoadResult {
    std::vector<ChannelTest> tests;
    std::vector<Diagnostic> errors;  // sorted by place in the file
    bool ok() const { return errors.empty(); }
};

// Parses and checks a test file against `manifest` (stage names, conditions).
TestLoadResult load_tests(std::string_view text, const Manifest& manifest);

// JSON lines (an input file) to messages: empty lines skipped; on a bad line, its number
// and why, and `out` holds the lines before it.
std::optional<std::string> decode_json_lines(std::string_view text, std::vector<TestMessage>& out);

}  // namespace mh::manifest
