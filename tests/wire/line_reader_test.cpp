// LineReader: lines from a file descriptor, with CRLF, a last line without a newline,
// over-long lines skipped and reported, and idle/end as FrameSource reports them.
#include "wire/line_reader.h"

#include "support/support.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

using mh::test::TempFile;
namespace {

using mh::wire::LineReader;
using mh::wire::Next;
using mh::wire::Wait;

// A file holding `content`, read from the start; closed at the end of the test.
struct Line {
    std::string text;
    uint64_t number;
    bool oversized;
    bool operator==(const Line&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Line& line) {
    return out << line.number << ":" << (line.oversized ? "oversized" : "\"" + line.text + "\"");
}

std::vector<Line> read_all(LineReader& reader) {
    std::vector<Line> lines;
    std::string_view line;
    while (reader.next(Wait::yes, line) == Next::frame)
        lines.push_back({std::string(line), reader.line_number(), reader.oversized()});
    return lines;
}

std::vector<Line> read_all(const std::string& content, size_t max_line_bytes = 1000) {
    TempFile file(content);
    LineReader reader(file.fd(), nullptr, max_line_bytes);
    return read_all(reader);
}

TEST(LineReader, ReturnsLinesWithoutTheirNewline) {
    EXPECT_EQ(read_all("one\ntwo\n"), (std::vector<Line>{{"one", 1, false}, {"two", 2, false}}));
}

TEST(LineReader, StripsTheCarriageReturnOfCrlf) {
    EXPECT_EQ(read_all("one\r\ntwo\r\n"),
              (std::vector<Line>{{"one", 1, false}, {"two", 2, false}}));
}

TEST(LineReader, KeepsACarriageReturnInsideALine) {
    EXPECT_EQ(read_all("a\rb\n"), (std::vector<Line>{{"a\rb", 1, false}}));
}

TEST(LineReader, AFinalLineWithoutNewlineIsStillALine) {
    EXPECT_EQ(read_all("one\ntwo"), (std::vector<Line>{{"one", 1, false}, {"two", 2, false}}));
    EXPECT_EQ(read_all("one\r"), (std::vector<Line>{{"one", 1, false}}));
}

TEST(LineReader, EmptyLinesAreLinesAndCount) {
    EXPECT_EQ(read_all("\n\nthree\n"),
              (std::vector<Line>{{"", 1, false}, {"", 2, false}, {"three", 3, false}}));
}

TEST(LineReader, EmptyInputHasNoLines) { EXPECT_TRUE(read_all("").empty()); }

TEST(LineReader, DropsAByteOrderMarkOnTheFirstLineOnly) {
    EXPECT_EQ(read_all("\xEF\xBB\xBFid,time\n\xEF\xBB\xBFx\n"),
              (std::vector<Line>{{"id,time", 1, false}, {"\xEF\xBB\xBFx", 2, false}}));
}

TEST(LineReader, ALineLongerThanTheLimitIsSkippedAndReported) {
    std::string content = "short\n" + std::string(25, 'x') + "\nafter\n";
    EXPECT_EQ(read_all(content, 10),
              (std::vector<Line>{{"short", 1, false}, {"", 2, true}, {"after", 3, false}}));
}

TEST(LineReader, TheLimitCountsTheLineWithoutItsLineEnd) {
    std::string ten(10, 'x');
    EXPECT_EQ(read_all(ten + "\n" + ten + "\r\n" + ten + "y\n", 10),
              (std::vector<Line>{{ten, 1, false}, {ten, 2, false}, {"", 3, true}}));
}

TEST(LineReader, AnOverLongLastLineWithoutNewlineIsReported) {
    EXPECT_EQ(read_all("ok\n" + std::string(11, 'x'), 10),
              (std::vector<Line>{{"ok", 1, false}, {"", 2, true}}));
}

TEST(LineReader, SkipsAHugeLineWithoutBufferingIt) {
    // Far longer than any read: reported as soon as it passes the limit, then skipped.
    std::string content = std::string(5 << 20, 'x') + "\nnext\n";
    EXPECT_EQ(read_all(content, 100), (std::vector<Line>{{"", 1, true}, {"next", 2, false}}));
}

TEST(LineReader, ReturnsLinesLongerThanOneRead) {
    std::string big(3 << 20, 'y');
    auto lines = read_all(big + "\nz\n", 4 << 20);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].text.size(), big.size());
    EXPECT_EQ(lines[1], (Line{"z", 2, false}));
}

TEST(LineReader, ReadsManyLinesAcrossBufferRefills) {
    std::string content;
    for (int i = 0; i < 200000; ++i) content += "line " + std::to_string(i) + "\n";
    auto lines = read_all(content);
    ASSERT_EQ(lines.size(), 200000u);
    EXPECT_EQ(lines[123456], (Line{"line 123456", 123457, false}));
    EXPECT_EQ(lines.back(), (Line{"line 199999", 200000, false}));
}

TEST(LineReader, IsIdleWhenALineIsNotCompleteYet) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    LineReader reader(fds[0], nullptr);
    std::string_view line;
    EXPECT_EQ(reader.next(Wait::no, line), Next::idle);

    ASSERT_EQ(write(fds[1], "par", 3), 3);
    EXPECT_EQ(reader.next(Wait::no, line), Next::idle);  // no newline yet
    ASSERT_EQ(write(fds[1], "tial\nrest", 9), 9);
    ASSERT_EQ(reader.next(Wait::no, line), Next::frame);
    EXPECT_EQ(line, "partial");
    EXPECT_EQ(reader.next(Wait::no, line), Next::idle);

    close(fds[1]);  // end of input: the rest is the last line
    ASSERT_EQ(reader.next(Wait::no, line), Next::frame);
    EXPECT_EQ(line, "rest");
    EXPECT_EQ(reader.next(Wait::no, line), Next::end);
    EXPECT_EQ(reader.next(Wait::yes, line), Next::end);
    close(fds[0]);
}

TEST(LineReader, EndsOnAStopRequestAfterTheLinesAlreadyRead) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    mh::StopFlag stop{false};
    LineReader reader(fds[0], &stop);
    ASSERT_EQ(write(fds[1], "whole\nhalf", 10), 10);
    std::string_view line;
    ASSERT_EQ(reader.next(Wait::yes, line), Next::frame);
    EXPECT_EQ(line, "whole");
    stop = true;
    // The half line belongs to a writer being stopped too: dropped, not a line.
    EXPECT_EQ(reader.next(Wait::yes, line), Next::end);
    EXPECT_TRUE(reader.stopped());
    close(fds[0]);
    close(fds[1]);
}

TEST(LineReader, LeavesReadablePaddingAfterEachLine) {
    // simdjson reads up to 64 bytes past the end of a line; they must be ours to read.
    TempFile file("{\"a\":1}\n{\"b\":2}");
    LineReader reader(file.fd(), nullptr);
    std::string_view line;
    while (reader.next(Wait::yes, line) == Next::frame) {
        volatile char sink = 0;
        for (size_t i = 0; i < mh::wire::k_read_padding_bytes; ++i)
            sink = sink + line.data()[line.size() + i];
        (void)sink;
    }
}

}  // namespace
