#include "ingest/records.h"

#include "json/json_codec.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <charconv>

namespace mh::ingest {

struct RecordExtractor::Impl {
    simdjson::dom::parser parser;
};

RecordExtractor::RecordExtractor() : m_impl(std::make_unique<Impl>()) {}
RecordExtractor::~RecordExtractor() = default;

namespace {
// The value at a dotted path inside `element`, or why there is none.
std::optional<std::string> walk(simdjson::dom::element& element, std::string_view path) {
    while (!path.empty()) {
        size_t dot = path.find('.');
        std::string_view step = path.substr(0, dot);
        path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
        simdjson::dom::object object;
        if (element.get_object().get(object)) return fmt::format("\"{}\" is inside something that is not an object", step);
        if (object.at_key(step).get(element)) return fmt::format("no key \"{}\"", step);
    }
    return std::nullopt;
}

void add_record(simdjson::dom::element element, const std::string& key_path, std::vector<Record>& records) {
    Record& record = records.emplace_back();
    record.json = simdjson::minify(element);
    if (!key_path.empty() && !walk(element, key_path)) record.key = simdjson::minify(element);
}
}  // namespace

std::optional<std::string> RecordExtractor::extract(std::string_view document, const std::string& path,
                                                    const std::string& key_path, std::vector<Record>& records) {
    records.clear();
    simdjson::dom::element root;
    if (auto error = m_impl->parser.parse(document.data(), document.size()).get(root))
        return fmt::format("invalid JSON: {}", simdjson::error_message(error));
    if (auto reason = walk(root, path)) return fmt::format("path \"{}\": {}", path, *reason);
    simdjson::dom::array array;
    if (root.get_array().get(array) == simdjson::SUCCESS) {
        for (auto element : array) add_record(element, key_path, records);
    } else {
        add_record(root, key_path, records);
    }
    return std::nullopt;
}

std::optional<std::string> rename_keys(std::string_view json,
                                       const std::vector<std::pair<std::string, std::string>>& renames,
                                       std::string& out) {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::object object;
    if (auto error = parser.parse(json.data(), json.size()).get_object().get(object))
        return fmt::format("invalid JSON: {}", simdjson::error_message(error));
    out.clear();
    out += '{';
    bool first = true;
    for (auto [key, value] : object) {
        if (!first) out += ',';
        first = false;
        std::string_view name = key;
        for (const auto& [from, to] : renames)
            if (name == from) {
                name = to;
                break;
            }
        json::append_string(out, name);
        out += ':';
        out += simdjson::minify(value);
    }
    out += '}';
    return std::nullopt;
}

uint64_t fnv1a(std::string_view bytes) {
    uint64_t hash = 0xcbf29ce484222325ull;
    for (unsigned char c : bytes) {
        hash ^= c;
        hash *= 0x100000001b3ull;
    }
    return hash;
}

bool split_csv_line(std::string_view line, std::vector<std::string>& cells, std::vector<bool>& quoted) {
    cells.clear();
    quoted.clear();
    size_t i = 0;
    for (;;) {
        std::string& cell = cells.emplace_back();
        bool is_quoted = i < line.size() && line[i] == '"';
        quoted.push_back(is_quoted);
        if (is_quoted) {
            ++i;
            for (;;) {
                if (i >= line.size()) return false;  // unclosed
                if (line[i] == '"') {
                    if (i + 1 < line.size() && line[i + 1] == '"') {
                        cell += '"';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                cell += line[i++];
            }
            // Anything between the closing quote and the comma is kept, as lenient readers do.
            while (i < line.size() && line[i] != ',') cell += line[i++];
        } else {
            size_t comma = line.find(',', i);
            size_t end = comma == std::string_view::npos ? line.size() : comma;
            cell.assign(line.substr(i, end - i));
            i = end;
        }
        if (i >= line.size()) return true;
        ++i;  // the comma
    }
}

namespace {
bool is_json_number(std::string_view text) {
    size_t i = 0, n = text.size();
    if (i < n && text[i] == '-') ++i;
    if (i >= n) return false;
    if (text[i] == '0') {
        ++i;
    } else if (text[i] >= '1' && text[i] <= '9') {
        while (i < n && text[i] >= '0' && text[i] <= '9') ++i;
    } else {
        return false;
    }
    if (i < n && text[i] == '.') {
        ++i;
        size_t digits = i;
        while (i < n && text[i] >= '0' && text[i] <= '9') ++i;
        if (i == digits) return false;
    }
    if (i < n && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        if (i < n && (text[i] == '+' || text[i] == '-')) ++i;
        size_t digits = i;
        while (i < n && text[i] >= '0' && text[i] <= '9') ++i;
        if (i == digits) return false;
    }
    return i == n;
}

void append_cell(std::string& out, const std::string& cell) {
    if (json::is_integer_text(cell)) {
        int64_t value = 0;
        auto [end, error] = std::from_chars(cell.data(), cell.data() + cell.size(), value);
        if (error == std::errc() && end == cell.data() + cell.size()) {
            out += cell;
            return;
        }
    } else if (is_json_number(cell)) {
        out += cell;
        return;
    }
    if (cell == "true" || cell == "TRUE" || cell == "True") {
        out += "true";
        return;
    }
    if (cell == "false" || cell == "FALSE" || cell == "False") {
        out += "false";
        return;
    }
    json::append_string(out, cell);
}
}  // namespace

std::optional<std::string> csv_row_to_json(const std::vector<std::string>& header, std::string_view line,
                                           std::string& out) {
    thread_local std::vector<std::string> cells;
    thread_local std::vector<bool> quoted;
    if (!split_csv_line(line, cells, quoted)) return std::string("unclosed quote");
    if (cells.size() != header.size())
        return fmt::format("{} cells, header has {}", cells.size(), header.size());
    out.clear();
    out += '{';
    bool first = true;
    for (size_t i = 0; i < cells.size(); ++i) {
        if (cells[i].empty() && !quoted[i]) continue;
        if (!first) out += ',';
        first = false;
        json::append_string(out, header[i]);
        out += ':';
        append_cell(out, cells[i]);
    }
    out += '}';
    return std::nullopt;
}

}  // namespace mh::ingest
