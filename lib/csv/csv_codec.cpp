#include "csv/csv_codec.h"

#include "message/id.h"
#include "message/time.h"

#include <capnp/serialize.h>
#include <fmt/format.h>
#include <kj/exception.h>

#include <charconv>
#include <cmath>
#include <cstring>

namespace mh {
namespace {

using FieldValue = schema::Field::Value;

// What a column is: a part of the message header, or a field.
enum class Role : uint8_t { id, time, ingested, source, gateway, kind, body, field };

constexpr size_t k_header_columns = 7;  // id .. body
constexpr size_t k_max_columns = k_max_fields + k_header_columns;

Role role_of(std::string_view name) {
    if (name == "id") return Role::id;
    if (name == "time") return Role::time;
    if (name == "ingested") return Role::ingested;
    if (name == "source") return Role::source;
    if (name == "gateway") return Role::gateway;
    if (name == "kind") return Role::kind;
    if (name == "body") return Role::body;
    return Role::field;
}

enum class Split { complete, open_quote, bad };

// Cuts one record into cells. Cells point into `text`, or into `unescaped` for quoted cells
// with doubled quotes; `unescaped` is reserved up front so those views stay put.
Split split_record(std::string_view text, size_t max_cells, std::vector<std::string_view>& cells,
                   std::vector<uint8_t>& quoted, std::string& unescaped, std::string& reason) {
    cells.clear();
    quoted.clear();
    unescaped.clear();
    unescaped.reserve(text.size());
    const char* data = text.data();
    size_t size = text.size();
    size_t i = 0;
    for (;;) {
        if (cells.size() == max_cells) {
            reason = fmt::format("more than {} cells", max_cells);
            return Split::bad;
        }
        if (i < size && data[i] == '"') {
            size_t start = ++i;
            bool doubled = false;
            for (;;) {
                auto* quote = static_cast<const char*>(std::memchr(data + i, '"', size - i));
                if (!quote) return Split::open_quote;
                i = static_cast<size_t>(quote - data);
                if (i + 1 < size && data[i + 1] == '"') {
                    doubled = true;
                    i += 2;
                    continue;
                }
                break;
            }
            std::string_view raw = text.substr(start, i - start);
            ++i;  // the closing quote
            if (doubled) {
                size_t offset = unescaped.size();
                for (size_t k = 0; k < raw.size(); ++k) {
                    unescaped.push_back(raw[k]);
                    if (raw[k] == '"') ++k;  // the second of a pair
                }
                cells.push_back(std::string_view(unescaped).substr(offset));
            } else {
                cells.push_back(raw);
            }
            quoted.push_back(1);
            if (i == size) return Split::complete;
            if (data[i] != ',') {
                reason = fmt::format("cell {}: text after its closing quote", cells.size());
                return Split::bad;
            }
            ++i;
        } else {
            // A quote inside an unquoted cell is taken as it is, as most readers do.
            auto* comma = static_cast<const char*>(std::memchr(data + i, ',', size - i));
            size_t end = comma ? static_cast<size_t>(comma - data) : size;
            cells.push_back(text.substr(i, end - i));
            quoted.push_back(0);
            if (!comma) return Split::complete;
            i = end + 1;
        }
    }
}

// JSON's number grammar with a fraction or an exponent: "21.5", "-1e3", not "1." or ".5".
bool is_float_text(std::string_view text) {
    size_t i = 0, n = text.size();
    auto digits = [&] {
        size_t start = i;
        while (i < n && text[i] >= '0' && text[i] <= '9') ++i;
        return i > start;
    };
    if (i < n && text[i] == '-') ++i;
    if (i < n && text[i] == '0')
        ++i;
    else if (!digits())
        return false;
    bool fraction_or_exponent = false;
    if (i < n && text[i] == '.') {
        ++i;
        if (!digits()) return false;
        fraction_or_exponent = true;
    }
    if (i < n && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        if (i < n && (text[i] == '+' || text[i] == '-')) ++i;
        if (!digits()) return false;
        fraction_or_exponent = true;
    }
    return i == n && fraction_or_exponent;
}

template <typename Init>
void init_copy(Init init, std::string_view bytes) {
    auto builder = init(static_cast<unsigned>(bytes.size()));
    if (!bytes.empty()) std::memcpy(builder.begin(), bytes.data(), bytes.size());
}

// One cell's typed value, set on `value`.
void set_inferred(FieldValue::Builder value, std::string_view cell) {
    if (cell == "true" || cell == "TRUE" || cell == "True") {
        value.setBool(true);
        return;
    }
    if (cell == "false" || cell == "FALSE" || cell == "False") {
        value.setBool(false);
        return;
    }
    if (json::is_integer_text(cell)) {
        int64_t number;
        auto [end, error] = std::from_chars(cell.data(), cell.data() + cell.size(), number);
        if (error == std::errc() && end == cell.data() + cell.size()) {
            value.setInt(number);
            return;
        }
    } else if (is_float_text(cell)) {
        double number;
        auto [end, error] = std::from_chars(cell.data(), cell.data() + cell.size(), number);
        if (error == std::errc() && end == cell.data() + cell.size() && std::isfinite(number)) {
            value.setFloat(number);
            return;
        }
    }
    // Integers beyond int64 and numbers beyond double stay text, digits intact.
    init_copy([&](unsigned n) { return value.initText(n); }, cell);
}

void append_cell(std::string& out, std::string_view text, bool force_quotes = false) {
    if (!force_quotes && text.find_first_of(",\"\r\n") == std::string_view::npos) {
        out += text;
        return;
    }
    out.push_back('"');
    for (char c : text) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
}

std::string_view view(capnp::Text::Reader text) { return {text.begin(), text.size()}; }

}  // namespace

// ---- CsvSource ---------------------------------------------------------------------------

CsvSource::CsvSource(int fd, const StopFlag* stop, Log& log, Strict strict,
                     wire::FrameLimits limits)
    : m_reader(fd, stop, limits.max_frame_bytes), m_log(log), m_strict(strict), m_limits(limits) {}

CsvSource::~CsvSource() noexcept = default;

bool CsvSource::reject(uint64_t line_number, const std::string& reason) {
    ++m_rejected;
    if (m_strict == Strict::yes) {
        m_error = fmt::format("line {}: {}", line_number, reason);
        return true;
    }
    m_log.warn("line {}: {}", line_number, reason);
    return false;
}

wire::Next CsvSource::next(wire::Wait wait, wire::Frame& frame) {
    for (;;) {
        std::string_view line;
        wire::Next next = m_reader.next(wait, line);
        if (next == wire::Next::end && !m_record.empty() && !m_reader.stopped()) {
            m_record.clear();
            if (reject(m_record_line, "a quoted cell is not closed by the end of the input"))
                return wire::Next::broken;
        }
        if (next != wire::Next::frame) return next;

        uint64_t line_number = m_reader.line_number();
        if (m_reader.oversized()) {
            std::string reason =
                fmt::format("longer than the limit of {} bytes", m_reader.max_line_bytes());
            if (!m_have_header) {
                m_error = fmt::format("line {}: header {}", line_number, reason);
                return wire::Next::broken;
            }
            if (!m_record.empty()) {
                line_number = m_record_line;
                m_record.clear();
            }
            if (reject(line_number, reason)) return wire::Next::broken;
            continue;
        }

        std::string_view record;
        if (m_record.empty()) {
            if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
            record = line;
            m_record_line = line_number;
        } else {
            // A quoted cell went on over a line break: the record is gathered here.
            m_record += '\n';
            m_record += line;
            if (m_record.size() > m_reader.max_line_bytes()) {
                m_record.clear();
                if (reject(m_record_line, fmt::format("record longer than the limit of {} bytes",
                                                      m_reader.max_line_bytes())))
                    return wire::Next::broken;
                continue;
            }
            record = m_record;
        }

        std::string reason;
        size_t max_cells = m_have_header ? m_columns.size() + 1 : k_max_columns;
        Split split = split_record(record, max_cells, m_cells, m_quoted, m_unescaped, reason);
        if (split == Split::open_quote) {
            if (m_record.empty()) m_record.assign(line);
            continue;
        }
        std::optional<std::string> problem;
        if (split == Split::bad) {
            problem = reason;
        } else if (!m_have_header) {
            problem = read_header();
            if (problem) {
                m_record.clear();
                ++m_rejected;
                m_error = fmt::format("line {}: header: {}", m_record_line, *problem);
                return wire::Next::broken;
            }
            m_record.clear();
            continue;
        } else if (m_cells.size() != m_columns.size()) {
            problem = fmt::format("{} cells, header has {}", m_cells.size(), m_columns.size());
        } else {
            problem = decode_row();
        }
        m_record.clear();  // the frame holds copies of everything it needs
        if (problem) {
            if (reject(m_record_line, *problem)) return wire::Next::broken;
            continue;
        }
        frame.words = reinterpret_cast<const capnp::word*>(m_frame.data());
        frame.word_count = m_frame.size() / sizeof(capnp::word);
        return wire::Next::frame;
    }
}

std::optional<std::string> CsvSource::read_header() {
    m_columns.clear();
    m_roles.clear();
    for (size_t i = 0; i < m_cells.size(); ++i) {
        std::string_view name = m_cells[i];
        if (name.empty()) return fmt::format("column {} has no name", i + 1);
        for (auto& earlier : m_columns)
            if (earlier == name) return fmt::format("column \"{}\" appears twice", name);
        m_columns.emplace_back(name);
        m_roles.push_back(static_cast<uint8_t>(role_of(name)));
    }
    m_have_header = true;
    return std::nullopt;
}

std::optional<std::string> CsvSource::decode_row() {
    auto message = m_builder.start();
    size_t present = 0;
    for (size_t i = 0; i < m_cells.size(); ++i)
        present += Role(m_roles[i]) == Role::field && (!m_cells[i].empty() || m_quoted[i]);
    auto fields = message.initFields(static_cast<unsigned>(present));
    unsigned k = 0;
    for (size_t i = 0; i < m_cells.size(); ++i) {
        std::string_view cell = m_cells[i];
        if (cell.empty() && (Role(m_roles[i]) != Role::field || !m_quoted[i])) continue;
        switch (Role(m_roles[i])) {
            case Role::id: {
                auto id = parse_id(cell);
                if (!id) return std::string("id: not a UUID");
                std::memcpy(message.initId(id->size()).begin(), id->data(), id->size());
                break;
            }
            case Role::time:
            case Role::ingested: {
                auto ns = json::parse_time_text(cell);
                if (!ns)
                    return fmt::format("{}: expected integer nanoseconds or RFC 3339 text",
                                       m_columns[i]);
                if (Role(m_roles[i]) == Role::time)
                    message.setTime(*ns);
                else
                    message.setIngested(*ns);
                break;
            }
            case Role::source:
                init_copy([&](unsigned n) { return message.initSource(n); }, cell);
                break;
            case Role::gateway:
                init_copy([&](unsigned n) { return message.initGateway(n); }, cell);
                break;
            case Role::kind:
                init_copy([&](unsigned n) { return message.initKind(n); }, cell);
                break;
            case Role::body:
                init_copy([&](unsigned n) { return message.initBody(n); }, cell);
                break;
            case Role::field: {
                auto field = fields[k++];
                init_copy([&](unsigned n) { return field.initName(n); }, m_columns[i]);
                set_inferred(field.getValue(), cell);
                break;
            }
        }
    }
    m_frame.clear();
    wire::append_frame(m_builder.builder(), m_frame);
    if (m_frame.size() > m_limits.max_frame_bytes)
        return fmt::format("message of {} bytes is over the frame limit of {} bytes",
                           m_frame.size(), m_limits.max_frame_bytes);
    return std::nullopt;
}

// ---- CsvSink -----------------------------------------------------------------------------

CsvSink::CsvSink(int fd, std::vector<std::string> columns, TimeFormat time_format,
                 wire::FrameLimits limits)
    : m_output(fd), m_columns(std::move(columns)), m_time_format(time_format), m_limits(limits) {
    for (auto& column : m_columns) m_roles.push_back(static_cast<uint8_t>(role_of(column)));
}

void CsvSink::start(schema::Message::Reader first) {
    if (m_columns.empty()) {
        auto add = [&](std::string_view name) {
            for (auto& column : m_columns)
                if (column == name) return;
            m_columns.emplace_back(name);
            m_roles.push_back(static_cast<uint8_t>(role_of(name)));
        };
        add("id");
        add("time");
        if (first.getIngested() != 0) add("ingested");
        add("source");
        add("gateway");
        add("kind");
        // A field named like a header column could not be told apart from it.
        for (auto field : first.getFields())
            if (role_of(view(field.getName())) == Role::field) add(view(field.getName()));
        if (first.getBody().size() > 0) add("body");
    }
    m_row.clear();
    for (size_t i = 0; i < m_columns.size(); ++i) {
        if (i > 0) m_row.push_back(',');
        append_cell(m_row, m_columns[i]);
    }
    m_row.push_back('\n');
    m_output.append(m_row);
    m_header_written = true;
}

void CsvSink::append_row(schema::Message::Reader message) {
    // Match fields to columns; messages of one stream tend to keep one order, so the
    // search starts after the column matched last.
    auto fields = message.getFields();
    m_cell_field.assign(m_columns.size(), -1);
    size_t hint = 0;
    for (unsigned f = 0; f < fields.size(); ++f) {
        std::string_view name = view(fields[f].getName());
        for (size_t step = 0; step < m_columns.size(); ++step) {
            size_t k = (hint + step) % m_columns.size();
            if (Role(m_roles[k]) == Role::field && m_cell_field[k] < 0 && m_columns[k] == name) {
                m_cell_field[k] = static_cast<int32_t>(f);
                hint = k + 1;
                break;
            }
        }
    }

    for (size_t k = 0; k < m_columns.size(); ++k) {
        if (k > 0) m_row.push_back(',');
        char buffer[64];
        auto append_time = [&](int64_t ns) {
            if (ns == 0) return;
            char* end = m_time_format == TimeFormat::nanoseconds
                            ? std::to_chars(buffer, buffer + sizeof(buffer), ns).ptr
                            : format_rfc3339(ns, buffer);
            m_row.append(buffer, end);
        };
        switch (Role(m_roles[k])) {
            case Role::id: {
                auto id = message.getId();
                if (id.size() > 0 && id.size() <= 16)
                    m_row.append(
                        buffer, format_id(std::span<const uint8_t>(id.begin(), id.size()), buffer));
                break;
            }
            case Role::time:
                append_time(message.getTime());
                break;
            case Role::ingested:
                append_time(message.getIngested());
                break;
            case Role::source:
                append_cell(m_row, view(message.getSource()));
                break;
            case Role::gateway:
                append_cell(m_row, view(message.getGateway()));
                break;
            case Role::kind:
                append_cell(m_row, view(message.getKind()));
                break;
            case Role::body: {
                auto body = message.getBody();
                append_cell(m_row, std::string_view(reinterpret_cast<const char*>(body.begin()),
                                                    body.size()));
                break;
            }
            case Role::field: {
                if (m_cell_field[k] < 0) break;
                auto value = fields[static_cast<unsigned>(m_cell_field[k])].getValue();
                switch (value.which()) {
                    case FieldValue::FLOAT:
                        // No CSV form for NaN and infinities that reads back: left empty.
                        if (std::isfinite(value.getFloat())) {
                            m_cell.clear();
                            json::append_float(m_cell, value.getFloat());
                            m_row += m_cell;
                        }
                        break;
                    case FieldValue::INT:
                        m_row.append(
                            buffer,
                            std::to_chars(buffer, buffer + sizeof(buffer), value.getInt()).ptr);
                        break;
                    case FieldValue::BOOL:
                        m_row += value.getBool() ? "true" : "false";
                        break;
                    // An empty text is quoted: an empty cell would mean "no such field".
                    case FieldValue::TEXT:
                        append_cell(m_row, view(value.getText()), value.getText().size() == 0);
                        break;
                    case FieldValue::JSON:
                        append_cell(m_row, view(value.getJson()));
                        break;
                }
                break;
            }
        }
    }
    m_row.push_back('\n');
}

void CsvSink::write(const wire::Frame& frame) {
    try {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count),
                                             wire::reader_options(m_limits));
        auto message = reader.getRoot<schema::Message>();
        if (message.getControl().isBarrier()) return;  // CSV has no place for them
        if (!m_header_written) start(message);
        m_row.clear();
        append_row(message);
    } catch (const kj::Exception& e) {
        ++m_rejected;
        m_last_error = e.getDescription().cStr();
        return;
    }
    m_output.append(m_row);
}

void CsvSink::flush() {
    if (!m_header_written && !m_columns.empty()) {
        start(schema::Message::Reader());
    }
    m_output.flush();
}

}  // namespace mh
