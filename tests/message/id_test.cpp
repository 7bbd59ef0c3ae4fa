// Message ids: UUIDv7 layout, strictly increasing per generator, text round trip.
#include "message/id.h"
#include "message/time.h"

#include <gtest/gtest.h>

#include <string>

using mh::IdGenerator;

namespace {
std::string text(const mh::MessageId& id) {
    char buffer[mh::k_id_text_chars];
    return std::string(buffer, mh::format_id(id, buffer));
}
}  // namespace

TEST(IdGenerator, LaysOutUuidV7) {
    IdGenerator ids(1);
    int64_t t = *mh::parse_rfc3339("2026-11-26T15:20:42.123Z");
    auto id = ids.next(t);
    uint64_t ms = 0;
    for (int i = 0; i < 6; ++i) ms = ms << 8 | id[i];
    EXPECT_EQ(ms, static_cast<uint64_t>(t / mh::k_ns_per_ms));
    EXPECT_EQ(id[6] >> 4, 7);        // version
    EXPECT_EQ(id[8] & 0xc0, 0x80);   // variant
}

TEST(IdGenerator, IncreasesEvenWhenTimeStandsStillOrGoesBack) {
    IdGenerator ids(7);
    auto a = ids.next(5'000'000'000);
    auto b = ids.next(5'000'000'000);
    auto c = ids.next(4'000'000'000);
    EXPECT_LT(a, b);
    EXPECT_LT(b, c);
}

TEST(IdGenerator, SameSeedSameIds) {
    IdGenerator x(42), y(42);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(x.next(i * 1000), y.next(i * 1000));
}

TEST(IdText, RoundTripsDashedAndPlainForms) {
    IdGenerator ids(3);
    auto id = ids.next(mh::wall_clock_ns());
    std::string dashed = text(id);
    ASSERT_EQ(dashed.size(), 36u);
    EXPECT_EQ(dashed[8], '-');
    EXPECT_EQ(mh::parse_id(dashed), id);
    std::string plain;
    for (char c : dashed)
        if (c != '-') plain += static_cast<char>(std::toupper(c));
    EXPECT_EQ(mh::parse_id(plain), id);
}

TEST(IdText, RejectsWhatIsNotAnId) {
    EXPECT_FALSE(mh::parse_id(""));
    EXPECT_FALSE(mh::parse_id("not-an-id"));
    EXPECT_FALSE(mh::parse_id("0123456789abcdef0123456789abcdeg"));
    EXPECT_FALSE(mh::parse_id("01234567-89ab-cdef-0123-456789abcdef0"));
    EXPECT_FALSE(mh::parse_id("01234567+89ab-cdef-0123-456789abcdef"));
}

TEST(IdText, FastPathsAgreeWithTheTableForEveryByteInEveryPlace) {
    // parse_id's vector path against the table lookup, and format_id against the plain
    // nibble-by-nibble form, for ids whose bytes cover every value, and for texts with each
    // byte value put in each place of a dashed and a plain id.
    mh::MessageId id;
    for (int round = 0; round < 16; ++round) {
        for (int i = 0; i < 16; ++i) id[i] = static_cast<uint8_t>(round * 16 + i * 17 + round);
        std::string dashed = text(id);
        std::string expected;
        for (int i = 0; i < 16; ++i) {
            if (i == 4 || i == 6 || i == 8 || i == 10) expected += '-';
            expected += "0123456789abcdef"[id[i] >> 4];
            expected += "0123456789abcdef"[id[i] & 0xf];
        }
        ASSERT_EQ(dashed, expected);
        EXPECT_EQ(mh::parse_id(dashed), id);
    }
    std::string dashed = "0123abcd-EF45-6789-aBcD-ef0123456789";
    std::string plain = "0123abcdEF456789aBcDef0123456789";
    for (std::string text : {dashed, plain}) {
        for (size_t place = 0; place < text.size(); ++place) {
            for (int byte = 0; byte < 256; ++byte) {
                std::string changed = text;
                changed[place] = static_cast<char>(byte);
                ASSERT_EQ(mh::parse_id(changed), mh::parse_id_portable(changed))
                    << changed << " (byte " << byte << " at " << place << ")";
            }
        }
    }
}
