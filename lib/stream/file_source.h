// Frames from a file that another program appends to (JSON lines or CSV), followed like
// `tail -F`: a rotated file (renamed, then created anew) is read to its end before the new
// one is opened, a truncated one (copytruncate) is read again from its start, and a file
// that is not there yet is waited for. Polling, not inotify: it works on every file system.
//
// The read position (device, inode, byte offset of the first line not yet delivered) is saved
// in a position file, written to a temporary file, fsynced and renamed over the old one,
// so a crash leaves the old position or the new, never a torn one. It is saved when the
// outputs have been flushed (the pump flushes whenever its input goes idle), at most once
// a second while lines keep coming, and at the end: a stop and restart neither loses nor
// repeats a line; a crash repeats at most the last second's. On restart, a file rotated
// while the tool was stopped is found again by its inode in the same directory and read to
// its end first.
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "ingest/mapping.h"
#include "wire/stream.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mh::stream {

constexpr auto k_default_poll = std::chrono::milliseconds(200);
constexpr auto k_save_every = std::chrono::seconds(1);
constexpr size_t k_read_chunk_bytes = 64 << 10;

struct FileOptions {
    std::string path;
    std::string format = "json";  // json (one object per line) or csv (a header line per file)
    std::string position_file;    // where the read position is kept; none: start afresh each run
    bool from_end = false;        // without a saved position, skip what the file already holds
    std::chrono::milliseconds poll = k_default_poll;
};

// Where reading stands: which file (by device and inode) and the offset of the first byte
// not yet delivered.
struct FilePosition {
    dev_t device = 0;
    ino_t inode = 0;
    uint64_t offset = 0;
    bool operator==(const FilePosition&) const = default;
};

// The position file's text is "DEVICE INODE OFFSET\n"; nullopt when missing or unreadable.
std::optional<FilePosition> load_position(const std::string& path);
// Atomically: temporary file, fsync, rename, fsync of the directory. Throws Error(io).
void save_position(const std::string& path, const FilePosition& position);

class FileSource final : public wire::FrameSource {
public:
    FileSource(const FileOptions& options, const ingest::MappingOptions& mapping, const StopFlag* stop, Log& log,
               wire::FrameLimits limits);
    ~FileSource() override;
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;

    wire::Next next(wire::Wait wait, wire::Frame& frame) override;
    uint64_t rejected() const override { return m_rejected; }

    // Saves the position of everything handed out; call once the outputs are flushed.
    void save_delivered();

private:
    bool open_current(uint64_t offset);           // the file at the path; false if it is not there
    bool open_by_inode(const FilePosition& saved);  // a rotated file in the same directory
    void close_file();
    // Reads more of the file into the buffer; false at its end for now.
    bool fill();
    // At the end of the file: handles truncation and rotation; true when there is more to read.
    bool check_file();
    bool read_csv_header();
    // The next complete line from the buffer, advancing the consumed offset.
    bool take_line(std::string_view& line, uint64_t& line_offset);
    void maybe_save(bool force);

    FileOptions m_options;
    const StopFlag* m_stop;
    Log& m_log;
    wire::FrameLimits m_limits;
    ingest::Mapper m_mapper;

    int m_fd = -1;
    FilePosition m_file;         // the open file; offset = how far it is read into the buffer
    std::string m_buffer;        // read but not yet consumed, starting at m_consumed
    size_t m_buffer_used = 0;    // bytes at the front of m_buffer already consumed
    uint64_t m_consumed = 0;     // file offset after the last line handed out (or skipped)
    bool m_skipping = false;     // inside an over-long line, up to its newline
    bool m_waiting_logged = false;

    std::vector<std::string> m_header;  // CSV columns of the open file
    std::string m_csv_json;

    FilePosition m_saved;           // what the position file holds
    FilePosition m_delivered;       // handed out and flushed
    FilePosition m_idle_snapshot;   // handed out when we last said idle: flushed since
    bool m_idle_pending = false;
    std::chrono::steady_clock::time_point m_last_save{};

    std::vector<std::byte> m_frame;
    uint64_t m_rejected = 0;
};

}  // namespace mh::stream
