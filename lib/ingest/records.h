// The records inside a JSON document (an HTTP API's response) and CSV lines as JSON objects,
// so that every source of mh-stream feeds the same Mapper.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::ingest {

struct Record {
    std::string json;  // the record, minified
    std::string key;   // the minified value at the key path, empty when absent or not asked
};

// Finds the value at a dotted path ("data.items"; empty: the document itself): an array
// gives one record per element, anything else one record. Reuses its parser.
class RecordExtractor {
public:
    RecordExtractor();
    ~RecordExtractor();

    // Replaces `records`, or returns why the document has none ("invalid JSON: ...",
    // "path \"data.items\": no key \"items\"").
    std::optional<std::string> extract(std::string_view document, const std::string& path,
                                       const std::string& key_path, std::vector<Record>& records);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// The JSON object `json` with top-level keys renamed (from, to), minified into `out`; returns
// why not when it is not a JSON object.
std::optional<std::string> rename_keys(std::string_view json,
                                       const std::vector<std::pair<std::string, std::string>>& renames,
                                       std::string& out);

// 64-bit FNV-1a: the identity of a record without a key, for de-duplication.
uint64_t fnv1a(std::string_view bytes);

// Splits one CSV line (RFC 4180 quoting, within the line) into cells; `quoted` says which
// cells were quoted. False on an unclosed quote.
bool split_csv_line(std::string_view line, std::vector<std::string>& cells, std::vector<bool>& quoted);

// A CSV row under its header as a JSON object, its cells typed as mh-cat reads CSV: a JSON
// integer within int64 is an int, a JSON number with a fraction or exponent a float,
// true/false (any of three cases) a bool, anything else text; an empty cell is absent, a
// quoted empty one empty text. Returns why not ("3 cells, header has 5").
std::optional<std::string> csv_row_to_json(const std::vector<std::string>& header, std::string_view line,
                                           std::string& out);

}  // namespace mh::ingest
