// FdInput on a regular file of some megabytes, which it maps instead of reading: the same
// lines and frames as through a pipe, the last line without a newline, a file that grows
// after the mapping, a stop request in the middle, and a file not read from its start.
#include "wire/fd_input.h"
#include "wire/line_reader.h"

#include "support/support.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

using mh::test::TempFile;
using namespace mh::wire;

// About 4 MiB of numbered lines of different lengths, the last one without a newline.
std::string big_text() {
    std::string text;
    for (int i = 0; text.size() < (4u << 20); ++i) text += "line " + std::to_string(i) + std::string(i % 97, 'x') + "\n";
    return text + "last";
}

std::vector<std::string> lines_of(int fd, const mh::StopFlag* stop = nullptr) {
    LineReader reader(fd, stop);
    std::vector<std::string> lines;
    std::string_view line;
    while (reader.next(Wait::yes, line) == Next::frame) lines.emplace_back(line);
    return lines;
}

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> lines;
    size_t at = 0;
    for (size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) lines.push_back(text.substr(at, nl - at));
    if (at < text.size()) lines.push_back(text.substr(at));
    return lines;
}

TEST(FdInput, MapsABigRegularFileFromItsStartAndNotAPipe) {
    TempFile file(big_text());
    EXPECT_TRUE(FdInput(file.fd(), nullptr).mapped());
    TempFile small("a\nb\n");
    EXPECT_FALSE(FdInput(small.fd(), nullptr).mapped());
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    EXPECT_FALSE(FdInput(fds[0], nullptr).mapped());
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST(FdInput, MappedLinesAreTheFilesLinesToTheLastWithoutNewline) {
    std::string text = big_text();
    TempFile file(text);
    auto lines = lines_of(file.fd());
    EXPECT_EQ(lines, split(text));
    EXPECT_EQ(lines.back(), "last");
}

TEST(FdInput, AFileThatGrewAfterTheMappingIsReadToItsNewEnd) {
    std::string text = big_text() + "\n";
    TempFile file(text);
    LineReader reader(file.fd(), nullptr);
    std::string_view line;
    ASSERT_EQ(reader.next(Wait::yes, line), Next::frame);
    EXPECT_EQ(line, "line 0");
    ASSERT_EQ(::pwrite(file.fd(), "grown 1\ngrown 2\n", 16, static_cast<off_t>(text.size())), 16);
    std::vector<std::string> rest;
    while (reader.next(Wait::yes, line) == Next::frame) rest.emplace_back(line);
    ASSERT_GE(rest.size(), 2u);
    EXPECT_EQ(rest[rest.size() - 2], "grown 1");
    EXPECT_EQ(rest.back(), "grown 2");
    EXPECT_EQ(rest.size() + 1, split(text).size() + 2);
}

TEST(FdInput, AStopRequestEndsAMappedFileBeforeItsEnd) {
    std::string text = big_text();
    TempFile file(text);
    mh::StopFlag stop{false};
    LineReader reader(file.fd(), &stop);
    std::string_view line;
    ASSERT_EQ(reader.next(Wait::yes, line), Next::frame);
    stop = true;
    size_t more = 0;
    while (reader.next(Wait::yes, line) == Next::frame) ++more;
    // What was handed out before the request (at most a read's worth) is still read.
    EXPECT_LT(more, split(text).size() - 1);
    EXPECT_TRUE(reader.stopped());
}

TEST(FdInput, AFileNotAtItsStartIsReadFromWhereItIs) {
    std::string text = big_text();
    TempFile file(text);
    ASSERT_EQ(::lseek(file.fd(), 5, SEEK_SET), 5);  // into "line 0"
    EXPECT_FALSE(FdInput(file.fd(), nullptr).mapped());
    ASSERT_EQ(::lseek(file.fd(), 5, SEEK_SET), 5);
    auto lines = lines_of(file.fd());
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.front(), "0");
    EXPECT_EQ(lines.size(), split(text).size());
}

}  // namespace
