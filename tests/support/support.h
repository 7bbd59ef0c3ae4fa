// Helpers the test suites share: temporary files to read from or write to, and frames
// as word-aligned storage that Cap'n Proto can read in place.
#pragma once

#include "wire/frame.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace mh::test {

// A file with `content` to read from, or an empty one to write to and read back.
class TempFile {
public:
    explicit TempFile(const std::string& content = "") : m_file(std::tmpfile()) {
        std::fwrite(content.data(), 1, content.size(), m_file);
        std::fflush(m_file);
        std::rewind(m_file);
    }
    ~TempFile() { std::fclose(m_file); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;

    int fd() const { return fileno(m_file); }
    std::string content() const {
        std::string text;
        char buffer[4096];
        ssize_t n;
        for (off_t at = 0; (n = pread(fd(), buffer, sizeof(buffer), at)) > 0; at += n) text.append(buffer, n);
        return text;
    }

private:
    std::FILE* m_file;
};

// Frame bytes (as wire::append_frame writes them) copied into aligned words.
inline std::vector<capnp::word> to_words(const std::vector<std::byte>& bytes) {
    std::vector<capnp::word> words(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.data(), bytes.data(), bytes.size());
    return words;
}

// The message in `builder` as one frame of aligned words.
inline std::vector<capnp::word> frame_words(capnp::MessageBuilder& builder) {
    std::vector<std::byte> bytes;
    wire::append_frame(builder, bytes);
    return to_words(bytes);
}

}  // namespace mh::test
