// CSV (RFC 4180) <-> frames, for spreadsheets and databases' COPY: the first line names the
// columns; id, time, ingested, source, gateway, kind and body fill the message header and
// every other column is a field, typed cell by cell:
//
//   time,source,temperature,status        ->  time=1764170442123000000 source="s1"
//   1764170442123000000,s1,21.5,ok            temperature=21.5 (float) status="ok" (text)
//
// A cell reads as an int when it is a JSON integer within int64 ("42", "-7", not "007"),
// a float when it is a JSON number with a fraction or exponent ("21.5", "1e3"), a bool for
// true/false (also TRUE/FALSE, True/False), text otherwise; quoting does not change that.
// An empty cell means the field is absent; a quoted empty cell ("") is an empty text.
// Times are integer nanoseconds or RFC 3339 text; the body cell's bytes are the body.
// Quoted cells may hold commas, doubled quotes and line breaks (a record then spans
// lines, up to the line limit in all). Text that looks like a number comes back from
// CSV as a number: CSV has no types of its own.
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "json/json_codec.h"
#include "message/scratch_builder.h"
#include "wire/fd_output.h"
#include "wire/line_reader.h"
#include "wire/stream.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mh {

// Frames from CSV on a file descriptor. A bad header ends the input (Next::broken). A bad
// row ("line N: 3 cells, header has 5", a bad time, ...) is logged, counted in rejected()
// and skipped, or with Strict::yes ends the input with error() = "line N: REASON".
// Empty lines are skipped.
class CsvSource final : public wire::FrameSource {
public:
    CsvSource(int fd, const StopFlag* stop, Log& log, Strict strict = Strict::no,
              wire::FrameLimits limits = {});
    // Cap'n Proto's builders may throw from their destructors; sources may not.
    ~CsvSource() noexcept override;

    // The frame points into this source's buffer, valid until the next call.
    wire::Next next(wire::Wait wait, wire::Frame& frame) override;
    std::string error() const override { return m_error; }
    uint64_t rejected() const override { return m_rejected; }

    // The header's column names, once the first line has been read.
    const std::vector<std::string>& columns() const { return m_columns; }

private:
    std::optional<std::string> read_header();
    std::optional<std::string> decode_row();
    // Counts and logs a bad record; true when that ends the input (Strict::yes).
    bool reject(uint64_t line_number, const std::string& reason);

    wire::LineReader m_reader;
    Log& m_log;
    Strict m_strict;
    wire::FrameLimits m_limits;
    ScratchBuilder m_builder;
    std::vector<std::string> m_columns;
    std::vector<uint8_t> m_roles;  // per column: a header part or a field
    bool m_have_header = false;

    // The record being read: its cells point into the line, m_record (a record over several
    // lines) or m_unescaped (cells with doubled quotes).
    std::string m_record;
    uint64_t m_record_line = 0;  // where m_record started
    std::vector<std::string_view> m_cells;
    std::vector<uint8_t> m_quoted;
    std::string m_unescaped;
    std::string m_body;

    std::vector<std::byte> m_frame;
    std::string m_error;
    uint64_t m_rejected = 0;
};

// Frames -> CSV on a file descriptor: a header line, then one row per message, cells quoted
// only when they must be. `columns` names what to write (id, time, ingested, source,
// gateway, kind, body, or a field name); empty means: from the first data message, id,
// time, source, gateway, kind, its field names in order, and body when it has one (with
// ingested after time when it has one). Fields a message lacks are empty cells; fields not
// in the columns are left out; barriers have no row.
class CsvSink final : public wire::FrameSink {
public:
    CsvSink(int fd, std::vector<std::string> columns = {},
            TimeFormat time_format = TimeFormat::nanoseconds, wire::FrameLimits limits = {});

    // A frame Cap'n Proto cannot read is skipped and counted, never half written.
    void write(const wire::Frame& frame) override;
    // Writes the header too when columns were given and no message came.
    void flush() override;

    uint64_t rejected() const { return m_rejected; }
    const std::string& last_error() const { return m_last_error; }
    const std::vector<std::string>& columns() const { return m_columns; }

private:
    void start(schema::Message::Reader first);
    void append_row(schema::Message::Reader message);

    wire::FdOutput m_output;
    std::vector<std::string> m_columns;
    std::vector<uint8_t> m_roles;       // per column: a header part or a field
    std::vector<int32_t> m_cell_field;  // per column, the index of the field that fills it
    TimeFormat m_time_format;
    wire::FrameLimits m_limits;
    bool m_header_written = false;
    std::string m_row;
    std::string m_cell;
    std::string m_last_error;
    uint64_t m_rejected = 0;
};

}  // namespace mh
