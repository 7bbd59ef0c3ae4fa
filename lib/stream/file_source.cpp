#include "stream/file_source.h"

#include "core/error.h"
#include "ingest/records.h"
#include "message/time.h"
#include "stream/log_sparingly.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

namespace mh::stream {

namespace {

std::string directory_of(const std::string& path) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

void write_all(int fd, std::string_view text, const std::string& path) {
    while (!text.empty()) {
        ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error(ExitCode::io, fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
        text.remove_prefix(static_cast<size_t>(n));
    }
}

uint64_t random_seed() {
    std::random_device device;
    return (uint64_t{device()} << 32) ^ device();
}

}  // namespace

std::optional<FilePosition> load_position(const std::string& path) {
    std::ifstream in(path);
    unsigned long long device = 0, inode = 0, offset = 0;
    if (!(in >> device >> inode >> offset)) return std::nullopt;
    return FilePosition{static_cast<dev_t>(device), static_cast<ino_t>(inode), offset};
}

void save_position(const std::string& path, const FilePosition& position) {
    std::string temporary = path + ".tmp";
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw Error(ExitCode::io, fmt::format("cannot write the position file '{}': {}", temporary, std::strerror(errno)));
    write_all(fd,
              fmt::format("{} {} {}\n", static_cast<unsigned long long>(position.device),
                          static_cast<unsigned long long>(position.inode), position.offset),
              temporary);
    if (::fsync(fd) != 0) {
        int err = errno;
        ::close(fd);
        throw Error(ExitCode::io, fmt::format("cannot fsync '{}': {}", temporary, std::strerror(err)));
    }
    ::close(fd);
    if (::rename(temporary.c_str(), path.c_str()) != 0)
        throw Error(ExitCode::io, fmt::format("cannot rename '{}' to '{}': {}", temporary, path, std::strerror(errno)));
    // The rename is durable once the directory is.
    int dir = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
}

FileSource::FileSource(const FileOptions& options, const ingest::MappingOptions& mapping, const StopFlag* stop,
                       Log& log, wire::FrameLimits limits)
    : m_options(options), m_stop(stop), m_log(log), m_limits(limits), m_mapper(mapping, random_seed()) {
    if (options.format != "json" && options.format != "csv")
        throw Error(ExitCode::usage, fmt::format("--format '{}': expected json or csv", options.format));
    std::optional<FilePosition> saved;
    if (!options.position_file.empty()) saved = load_position(options.position_file);
    if (saved) {
        m_saved = *saved;
        m_delivered = *saved;
        struct stat st {};
        if (::stat(options.path.c_str(), &st) == 0 && st.st_dev == saved->device && st.st_ino == saved->inode) {
            open_current(saved->offset);
        } else if (!open_by_inode(*saved)) {
            m_log.warn("'{}' was replaced while stopped and the file read before is gone: reading the new one "
                       "from its start",
                       options.path);
        }
    } else if (open_current(0) && options.from_end) {
        struct stat st {};
        ::fstat(m_fd, &st);
        close_file();
        open_current(static_cast<uint64_t>(st.st_size));
    }
}

FileSource::~FileSource() { close_file(); }

void FileSource::close_file() {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
}

bool FileSource::open_current(uint64_t offset) {
    close_file();
    int fd = ::open(m_options.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return false;
        throw Error(ExitCode::io, fmt::format("cannot open '{}': {}", m_options.path, std::strerror(errno)));
    }
    struct stat st {};
    ::fstat(fd, &st);
    if (offset > static_cast<uint64_t>(st.st_size)) {
        m_log.warn("'{}' is shorter than the saved position ({} < {} bytes): truncated, reading it from its start",
                   m_options.path, st.st_size, offset);
        offset = 0;
    }
    m_fd = fd;
    m_file = {st.st_dev, st.st_ino, offset};
    ::lseek(m_fd, static_cast<off_t>(offset), SEEK_SET);
    m_buffer.clear();
    m_buffer_used = 0;
    m_consumed = offset;
    m_skipping = false;
    m_waiting_logged = false;
    if (m_options.format == "csv") read_csv_header();
    return true;
}

bool FileSource::open_by_inode(const FilePosition& saved) {
    std::string directory = directory_of(m_options.path);
    DIR* dir = ::opendir(directory.c_str());
    if (!dir) return false;
    std::string found;
    while (dirent* entry = ::readdir(dir)) {
        std::string candidate = directory + "/" + entry->d_name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == saved.device &&
            st.st_ino == saved.inode) {
            found = candidate;
            break;
        }
    }
    ::closedir(dir);
    if (found.empty()) return false;
    int fd = ::open(found.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    m_log.info("'{}' was rotated while stopped: reading '{}' from byte {} to its end first", m_options.path, found,
               saved.offset);
    close_file();
    m_fd = fd;
    m_file = saved;
    ::lseek(m_fd, static_cast<off_t>(saved.offset), SEEK_SET);
    m_buffer.clear();
    m_buffer_used = 0;
    m_consumed = saved.offset;
    if (m_options.format == "csv") read_csv_header();
    return true;
}

bool FileSource::read_csv_header() {
    // The header is the file's first line; when reading from its start it comes as a line.
    m_header.clear();
    if (m_file.offset == 0) return false;
    std::string head;
    char chunk[4096];
    for (off_t at = 0; head.size() <= m_limits.max_frame_bytes;) {
        ssize_t n = ::pread(m_fd, chunk, sizeof chunk, at);
        if (n <= 0) break;
        head.append(chunk, static_cast<size_t>(n));
        at += n;
        if (size_t newline = head.find('\n'); newline != std::string::npos) {
            head.resize(newline);
            if (!head.empty() && head.back() == '\r') head.pop_back();
            std::vector<bool> quoted;
            return ingest::split_csv_line(head, m_header, quoted);
        }
    }
    return false;
}

bool FileSource::fill() {
    if (m_buffer_used > 0) {
        m_buffer.erase(0, m_buffer_used);
        m_buffer_used = 0;
    }
    size_t old = m_buffer.size();
    m_buffer.resize(old + k_read_chunk_bytes);
    ssize_t n = ::read(m_fd, m_buffer.data() + old, k_read_chunk_bytes);
    int err = errno;
    m_buffer.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
    if (n > 0) {
        m_file.offset += static_cast<uint64_t>(n);
        return true;
    }
    if (n < 0 && err != EINTR)
        throw Error(ExitCode::io, fmt::format("cannot read '{}': {}", m_options.path, std::strerror(err)));
    return false;
}

bool FileSource::check_file() {
    struct stat open_st {};
    if (::fstat(m_fd, &open_st) == 0 && static_cast<uint64_t>(open_st.st_size) < m_file.offset) {
        m_log.warn("'{}' was truncated: reading it again from its start", m_options.path);
        m_file.offset = 0;
        ::lseek(m_fd, 0, SEEK_SET);
        m_buffer.clear();
        m_buffer_used = 0;
        m_consumed = 0;
        m_skipping = false;
        m_header.clear();
        return true;
    }
    struct stat path_st {};
    if (::stat(m_options.path.c_str(), &path_st) != 0) return false;  // moved away, not created again yet
    if (path_st.st_dev == m_file.device && path_st.st_ino == m_file.inode) return false;
    // Rotated: the old file is read to its end. A last line without its newline will get
    // none now: it is a line all the same.
    if (m_buffer.size() > m_buffer_used) {
        m_buffer += '\n';
        return true;
    }
    m_log.info("'{}' was rotated: following the new file", m_options.path);
    return open_current(0);
}

bool FileSource::take_line(std::string_view& line, uint64_t& line_offset) {
    for (;;) {
        const char* begin = m_buffer.data() + m_buffer_used;
        size_t left = m_buffer.size() - m_buffer_used;
        const char* newline = static_cast<const char*>(std::memchr(begin, '\n', left));
        if (!newline) {
            if (left > m_limits.max_frame_bytes) {
                ++m_rejected;
                if (log_sparingly(m_rejected))
                    m_log.warn("'{}' at byte {}: a line longer than {} bytes, skipped", m_options.path, m_consumed,
                               m_limits.max_frame_bytes);
                m_consumed += left;
                m_buffer_used = m_buffer.size();
                m_skipping = true;
            }
            return false;
        }
        size_t length = static_cast<size_t>(newline - begin);
        line_offset = m_consumed;
        m_consumed += length + 1;
        m_buffer_used += length + 1;
        if (m_skipping) {
            m_skipping = false;
            continue;
        }
        if (length > 0 && begin[length - 1] == '\r') --length;
        line = std::string_view(begin, length);
        return true;
    }
}

void FileSource::maybe_save(bool force) {
    if (m_options.position_file.empty() || m_delivered == m_saved) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - m_last_save < k_save_every) return;
    save_position(m_options.position_file, m_delivered);
    m_saved = m_delivered;
    m_last_save = now;
}

void FileSource::save_delivered() {
    if (m_fd >= 0) m_delivered = {m_file.device, m_file.inode, m_consumed};
    maybe_save(true);
}

wire::Next FileSource::next(wire::Wait wait, wire::Frame& frame) {
    if (m_idle_pending) {  // the pump flushed its outputs after we said idle
        m_idle_pending = false;
        m_delivered = m_idle_snapshot;
        maybe_save(false);
    }
    for (;;) {
        if (m_stop && m_stop->load()) return wire::Next::end;
        if (m_fd < 0 && !open_current(0)) {
            if (!m_waiting_logged) m_log.info("waiting for '{}' to appear", m_options.path);
            m_waiting_logged = true;
            if (wait == wire::Wait::no) return wire::Next::idle;
            std::this_thread::sleep_for(m_options.poll);
            continue;
        }
        std::string_view line;
        uint64_t at = 0;
        if (take_line(line, at)) {
            if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
            std::string_view json = line;
            if (m_options.format == "csv") {
                if (m_header.empty()) {
                    std::vector<bool> quoted;
                    if (!ingest::split_csv_line(line, m_header, quoted)) m_header.clear();
                    continue;
                }
                if (auto reason = ingest::csv_row_to_json(m_header, line, m_csv_json)) {
                    ++m_rejected;
                    if (log_sparingly(m_rejected))
                        m_log.warn("'{}' at byte {}: {} ({} rejected so far)", m_options.path, at, *reason, m_rejected);
                    continue;
                }
                json = m_csv_json;
            }
            m_frame.clear();
            if (auto reason = m_mapper.map(json, {}, wall_clock_ns(), m_frame, m_limits.max_frame_bytes)) {
                ++m_rejected;
                if (log_sparingly(m_rejected))
                    m_log.warn("'{}' at byte {}: {} ({} rejected so far)", m_options.path, at, *reason, m_rejected);
                continue;
            }
            frame.words = reinterpret_cast<const capnp::word*>(m_frame.data());
            frame.word_count = m_frame.size() / sizeof(capnp::word);
            return wire::Next::frame;
        }
        if (fill()) continue;
        if (check_file()) continue;
        if (wait == wire::Wait::no) {
            m_idle_snapshot = {m_file.device, m_file.inode, m_consumed};
            m_idle_pending = true;
            return wire::Next::idle;
        }
        maybe_save(false);
        std::this_thread::sleep_for(m_options.poll);
    }
}

}  // namespace mh::stream
