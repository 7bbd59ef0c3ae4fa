// Fuzzes what mh-stream does with records from other systems: an API response split into
// records at a path, each record mapped with every mapping option, and the input as a CSV
// row. Refusals must leave the output as it was; what is accepted must be a readable frame.
#include "ingest/mapping.h"
#include "ingest/records.h"
#include "wire/frame.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace mh;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "ingest_fuzz: %s\n", what);
    std::abort();
}

void map_checked(ingest::Mapper& mapper, std::string_view json, const ingest::RecordHints& hints) {
    std::vector<std::byte> frame;
    if (mapper.map(json, hints, 1'700'000'000'000'000'000, frame, 1 << 16)) {
        if (!frame.empty()) fail("a refusal changed the output");
        return;
    }
    std::vector<capnp::word> words(frame.size() / sizeof(capnp::word));
    std::memcpy(words.data(), frame.data(), frame.size());
    wire::Frame view{words.data(), words.size()};
    if (auto reason = wire::check_frame(view, {1 << 16})) fail(reason->c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static ingest::Mapper plain({}, 1);
    static ingest::Mapper keyed(
        ingest::MappingOptions{.source_key = "dev.id", .kind_key = "type", .time_key = "ts",
                               .time_unit = ingest::TimeUnit::automatic, .kind = "telemetry"},
        2);
    static ingest::RecordExtractor extractor;
    std::string_view input(reinterpret_cast<const char*>(data), size);

    map_checked(plain, input, {});
    map_checked(keyed, input, {.source = "topic-level", .kind = ""});

    std::vector<ingest::Record> records;
    if (!extractor.extract(input, "data.items", "id", records) || !extractor.extract(input, "", "", records))
        for (const auto& record : records) map_checked(keyed, record.json, {});

    static const std::vector<std::string> header{"time", "source", "temperature", "status"};
    std::string json;
    if (!ingest::csv_row_to_json(header, input, json)) map_checked(plain, json, {});
    return 0;
}
