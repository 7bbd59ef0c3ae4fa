// CSV <-> frames: the header, typing cell by cell, RFC 4180 quoting, bad rows, and the
// sink's header, quoting and missing cells. Messages are shown as JSON lines to compare.
#include "csv/csv_codec.h"
#include "json/json_codec.h"

#include <capnp/serialize.h>
#include "support/support.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

using mh::test::TempFile;
namespace {

using namespace mh;

struct CsvRead {
    std::vector<std::string> json;  // each message as a JSON line, without '\n'
    wire::Next last;
    uint64_t rejected;
    std::string error;
};

CsvRead read_csv(const std::string& csv, Strict strict = Strict::no,
                 wire::FrameLimits limits = {}) {
    TempFile input(csv);
    Log log("test", LogLevel::error);
    CsvSource source(input.fd(), nullptr, log, strict, limits);
    JsonEncoder encoder;
    CsvRead result;
    wire::Frame frame;
    while ((result.last = source.next(wire::Wait::yes, frame)) == wire::Next::frame) {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
        std::string line;
        encoder.encode(reader.getRoot<schema::Message>(), line);
        line.pop_back();
        result.json.push_back(line);
    }
    result.rejected = source.rejected();
    result.error = source.error();
    return result;
}

using Lines = std::vector<std::string>;

// JSON lines -> frames -> CsvSink -> text.
std::string write_csv(const Lines& json_lines, std::vector<std::string> columns = {},
                      TimeFormat time_format = TimeFormat::nanoseconds) {
    TempFile output;
    {
        CsvSink sink(output.fd(), std::move(columns), time_format);
        JsonDecoder decoder;
        for (auto& line : json_lines) {
            std::vector<std::byte> bytes;
            EXPECT_FALSE(decoder.decode(line, bytes)) << line;
            auto words = test::to_words(bytes);
            sink.write(wire::Frame{words.data(), words.size()});
        }
        sink.flush();
    }
    return output.content();
}

// ---- CSV -> frames --------------------------------------------------------------------------

TEST(CsvSource, TheHeaderNamesHeaderPartsAndFields) {
    auto read = read_csv(
        "id,time,ingested,source,gateway,kind,body,temperature\n"
        "0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b,1,2,s1,gw-01,telemetry,payload,21.5\n");
    EXPECT_EQ(
        read.json,
        Lines{
            R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b","time":1,"ingested":2,)"
            R"("source":"s1","gateway":"gw-01","kind":"telemetry","temperature":21.5,"body":"payload"})"});
    EXPECT_EQ(read.last, wire::Next::end);
}

TEST(CsvSource, TypesEachCellOnItsOwn) {
    auto read = read_csv(
        "v\n"
        "42\n-7\n21.5\n1e3\n-0.5E-2\ntrue\nFALSE\nTrue\nok\n007\n1.\n.5\n+1\n"
        "99999999999999999999\n1e999\nnan\n 42\n");
    EXPECT_EQ(read.json, (Lines{
                             R"({"v":42})",
                             R"({"v":-7})",
                             R"({"v":21.5})",
                             R"({"v":1000.0})",
                             R"({"v":-0.005})",
                             R"({"v":true})",
                             R"({"v":false})",
                             R"({"v":true})",
                             R"({"v":"ok"})",
                             R"({"v":"007"})",
                             R"({"v":"1."})",
                             R"({"v":".5"})",
                             R"({"v":"+1"})",
                             R"({"v":"99999999999999999999"})",
                             R"({"v":"1e999"})",
                             R"({"v":"nan"})",
                             R"({"v":" 42"})",
                         }));
}

TEST(CsvSource, AnEmptyCellMeansTheFieldIsAbsent) {
    auto read =
        read_csv("time,source,temperature,door\n1,s1,21.5,open\n2,s2,,closed\n3,\"s,3\",22,\n");
    EXPECT_EQ(read.json, (Lines{R"({"time":1,"source":"s1","temperature":21.5,"door":"open"})",
                                R"({"time":2,"source":"s2","door":"closed"})",
                                R"({"time":3,"source":"s,3","temperature":22})"}));
}

TEST(CsvSource, AQuotedEmptyCellIsAnEmptyText) {
    EXPECT_EQ(read_csv("a,b\n\"\",\n").json, Lines{R"({"a":""})"});
}

TEST(CsvSource, QuotedCellsHoldCommasQuotesAndLineBreaks) {
    auto read = read_csv(
        "source,note\n"
        "\"a,b\",\"say \"\"hi\"\"\"\n"
        "c,\"two\n"
        "lines, and \"\"more\"\"\"\n"
        "d,\"\"\"\"\n");
    EXPECT_EQ(read.json, (Lines{R"({"source":"a,b","note":"say \"hi\""})",
                                R"({"source":"c","note":"two\nlines, and \"more\""})",
                                R"({"source":"d","note":"\""})"}));
}

TEST(CsvSource, QuotedNumbersAreTypedToo) {
    EXPECT_EQ(read_csv("\"a\",\"b\"\n\"1\",\"x\"\n").json, Lines{R"({"a":1,"b":"x"})"});
}

TEST(CsvSource, ReadsCrlfAByteOrderMarkAndALastLineWithoutNewline) {
    EXPECT_EQ(read_csv("\xEF\xBB\xBFsource,n\r\na,1\r\n\r\nb,2").json,
              (Lines{R"({"source":"a","n":1})", R"({"source":"b","n":2})"}));
}

TEST(CsvSource, TimesAreNanosecondsOrRfc3339) {
    EXPECT_EQ(read_csv("time\n2026-11-26T15:20:42.5+01:00\n-3\n").json,
              (Lines{R"({"time":1795702842500000000})", R"({"time":-3})"}));
}

TEST(CsvSource, ARowWithTheWrongNumberOfCellsIsSkippedAndCounted) {
    auto read = read_csv("a,b,c,d,e\n1,2,3,4,5\n1,2,3\n1,2,3,4,5,6\n6,7,8,9,10\n");
    EXPECT_EQ(read.json,
              (Lines{R"({"a":1,"b":2,"c":3,"d":4,"e":5})", R"({"a":6,"b":7,"c":8,"d":9,"e":10})"}));
    EXPECT_EQ(read.rejected, 2u);
    EXPECT_EQ(read.last, wire::Next::end);
}

TEST(CsvSource, StrictStopsAtTheFirstBadRowNamingIt) {
    auto read = read_csv("a,b,c,d,e\n1,2,3,4,5\n1,2,3\n", Strict::yes);
    EXPECT_EQ(read.json.size(), 1u);
    EXPECT_EQ(read.last, wire::Next::broken);
    EXPECT_EQ(read.error, "line 3: 3 cells, header has 5");
}

TEST(CsvSource, GivesAReasonForEveryBadRow) {
    auto first_error = [](const std::string& csv) { return read_csv(csv, Strict::yes).error; };
    EXPECT_EQ(first_error("id\nnope\n"), "line 2: id: not a UUID");
    EXPECT_EQ(first_error("time\nyesterday\n"),
              "line 2: time: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(first_error("ingested\n1.5\n"),
              "line 2: ingested: expected integer nanoseconds or RFC 3339 text");
    EXPECT_EQ(first_error("a,b\n\"x\"y,1\n"), "line 2: cell 1: text after its closing quote");
    EXPECT_EQ(first_error("a,b\n1,\"open\n"),
              "line 2: a quoted cell is not closed by the end of the input");
    EXPECT_EQ(
        read_csv("a\n" + std::string(100, 'x') + "\n", Strict::yes, wire::FrameLimits{64}).error,
        "line 2: longer than the limit of 64 bytes");
}

TEST(CsvSource, ABadHeaderEndsTheInput) {
    auto twice = read_csv("a,b,a\n1,2,3\n");
    EXPECT_EQ(twice.last, wire::Next::broken);
    EXPECT_EQ(twice.error, "line 1: header: column \"a\" appears twice");
    EXPECT_EQ(read_csv("a,,b\n").error, "line 1: header: column 2 has no name");
}

TEST(CsvSource, AnEmptyInputHasNoMessages) {
    auto read = read_csv("");
    EXPECT_TRUE(read.json.empty());
    EXPECT_EQ(read.last, wire::Next::end);
    EXPECT_TRUE(read_csv("a,b\n").json.empty());
}

// ---- frames -> CSV --------------------------------------------------------------------------

TEST(CsvSink, TakesItsHeaderFromTheFirstMessage) {
    EXPECT_EQ(
        write_csv(
            {R"({"time":1,"source":"s1","kind":"telemetry","temperature":21.5,"door":"open"})",
             R"({"time":2,"source":"s2","door":"closed","extra":1})"}),
        "id,time,source,gateway,kind,temperature,door\n"
        ",1,s1,,telemetry,21.5,open\n"
        ",2,s2,,,,closed\n");
}

TEST(CsvSink, AddsIngestedAndBodyWhenTheFirstMessageHasThem) {
    EXPECT_EQ(write_csv({R"({"time":1,"ingested":2,"x":1,"body":"b"})"}),
              "id,time,ingested,source,gateway,kind,x,body\n,1,2,,,,1,b\n");
}

TEST(CsvSink, WritesTheColumnsAskedFor) {
    EXPECT_EQ(
        write_csv(
            {R"({"id":"0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b","time":1795702842500000000,"b":true,"a":"x"})"},
            {"a", "b", "time", "id", "missing"}, TimeFormat::rfc3339),
        "a,b,time,id,missing\nx,true,2026-11-26T14:20:42.500Z,0190a6b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b,"
        "\n");
}

TEST(CsvSink, WritesTheHeaderEvenWithoutMessagesWhenColumnsAreGiven) {
    EXPECT_EQ(write_csv({}, {"time", "x"}), "time,x\n");
    EXPECT_EQ(write_csv({}), "");
}

TEST(CsvSink, QuotesOnlyWhatMustBe) {
    EXPECT_EQ(
        write_csv(
            {R"({"a":"plain","b":"with,comma","c":"say \"hi\"","d":"two\nlines","e":"","f":[1,2],"g":2.0})"},
            {"a", "b", "c", "d", "e", "f", "g"}),
        "a,b,c,d,e,f,g\nplain,\"with,comma\",\"say "
        "\"\"hi\"\"\",\"two\nlines\",\"\",\"[1,2]\",2.0\n");
}

TEST(CsvSink, SkipsBarriers) {
    EXPECT_EQ(write_csv({R"({"$barrier":1,"time":5})", R"({"x":1})"}, {"x"}), "x\n1\n");
}

TEST(CsvRoundTrip, CsvToFramesToCsvGivesTheSameText) {
    const std::string csv =
        "time,source,temperature,door,note\n"
        "1,s1,21.5,open,\"a, b\"\n"
        "2,s2,,closed,\"\"\n"
        "3,\"s,3\",22,,\"multi\nline \"\"quoted\"\"\"\n";
    TempFile input(csv);
    TempFile output;
    Log log("test");
    CsvSource source(input.fd(), nullptr, log);
    {
        CsvSink sink(output.fd(), {"time", "source", "temperature", "door", "note"});
        wire::Frame frame;
        while (source.next(wire::Wait::yes, frame) == wire::Next::frame) sink.write(frame);
        sink.flush();
    }
    EXPECT_EQ(output.content(), csv);
}

}  // namespace
