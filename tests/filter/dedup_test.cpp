// DedupSet: ids seen within a window of id time are duplicates; the window and a hard cap
// bound the memory; the hash set agrees with a plain std::set model under heavy churn.
#include "filter/dedup.h"

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <set>

using mh::MessageId;
using mh::filter::DedupSet;

namespace {

constexpr int64_t k_ns_per_ms = 1'000'000;

// A UUIDv7 id at `ms` milliseconds, told apart from others by `n`.
MessageId id_at(int64_t ms, uint64_t n) {
    MessageId id{};
    for (int i = 0; i < 6; ++i)
        id[i] = static_cast<uint8_t>(static_cast<uint64_t>(ms) >> (40 - 8 * i));
    id[6] = 0x70;
    id[8] = 0x80;
    for (int i = 0; i < 7; ++i) id[9 + i] = static_cast<uint8_t>(n >> (48 - 8 * i));
    return id;
}

DedupSet::Seen check(DedupSet& set, const MessageId& id) {
    return set.check(std::span<const uint8_t, 16>(id));
}

}  // namespace

TEST(DedupSet, SecondSightingWithinTheWindowIsAgain) {
    DedupSet seen(100, 10 * k_ns_per_ms);
    EXPECT_EQ(check(seen, id_at(1000, 1)), DedupSet::Seen::first);
    EXPECT_EQ(check(seen, id_at(1000, 2)), DedupSet::Seen::first);
    EXPECT_EQ(check(seen, id_at(1000, 1)), DedupSet::Seen::again);
    EXPECT_EQ(check(seen, id_at(1005, 3)), DedupSet::Seen::first);
    EXPECT_EQ(check(seen, id_at(1000, 2)), DedupSet::Seen::again);
    EXPECT_EQ(seen.size(), 3u);
}

TEST(DedupSet, ForgetsIdsThatFallOutOfTheWindow) {
    DedupSet seen(100, 10 * k_ns_per_ms);
    check(seen, id_at(1000, 1));
    check(seen, id_at(1010, 2));  // 1000 is still within 10 ms of the newest
    EXPECT_EQ(check(seen, id_at(1000, 1)), DedupSet::Seen::again);
    check(seen, id_at(1011, 3));  // now it is not
    EXPECT_EQ(seen.expired(), 1u);
    EXPECT_EQ(check(seen, id_at(1000, 1)), DedupSet::Seen::first);
    EXPECT_EQ(seen.size(), 2u);  // too old to be remembered again
    EXPECT_EQ(seen.evicted(), 0u);
}

TEST(DedupSet, TheCapForgetsTheOldestAndCountsIt) {
    DedupSet seen(3, 60'000 * k_ns_per_ms);
    for (uint64_t n = 1; n <= 5; ++n) check(seen, id_at(1000, n));
    EXPECT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen.evicted(), 2u);
    EXPECT_EQ(check(seen, id_at(1000, 5)), DedupSet::Seen::again);
    EXPECT_EQ(check(seen, id_at(1000, 3)), DedupSet::Seen::again);
    EXPECT_EQ(check(seen, id_at(1000, 1)),
              DedupSet::Seen::first);  // evicted: a late duplicate passes
}

TEST(DedupSet, WindowIsRoundedUpToWholeMilliseconds) {
    DedupSet seen(10, 1);  // 1 ns: ids of the same and the previous millisecond are kept
    check(seen, id_at(1000, 1));
    check(seen, id_at(1001, 2));
    EXPECT_EQ(check(seen, id_at(1000, 1)), DedupSet::Seen::again);
}

TEST(DedupSet, AgreesWithAPlainSetUnderChurn) {
    // Small capacity, many collisions in a small table, ids slightly out of order: every
    // answer must match a model made of a std::set and a FIFO.
    constexpr size_t k_capacity = 50;
    constexpr int64_t k_window_ms = 40;
    DedupSet seen(k_capacity, k_window_ms * k_ns_per_ms);
    std::set<MessageId> model;
    std::deque<MessageId> order;
    int64_t newest = 0;
    auto ms_of = [](const MessageId& id) {
        int64_t ms = 0;
        for (int i = 0; i < 6; ++i) ms = ms << 8 | id[i];
        return ms;
    };
    std::mt19937_64 random(7);
    std::vector<MessageId> issued;
    int64_t clock = 1000;
    for (int step = 0; step < 200'000; ++step) {
        MessageId id;
        if (!issued.empty() && random() % 3 == 0) {
            id = issued[issued.size() - 1 -
                        random() % std::min<size_t>(issued.size(), 120)];  // a repeat
        } else {
            clock += static_cast<int64_t>(random() % 3);
            id = id_at(clock - static_cast<int64_t>(random() % 5), random() % 1000);
            issued.push_back(id);
        }
        // The model, in the order the documentation gives.
        int64_t ms = ms_of(id);
        if (ms > newest) {
            newest = ms;
            while (!order.empty() && ms_of(order.front()) < newest - k_window_ms) {
                model.erase(order.front());
                order.pop_front();
            }
        }
        bool again = model.count(id) > 0;
        if (!again && ms >= newest - k_window_ms) {
            if (order.size() == k_capacity) {
                model.erase(order.front());
                order.pop_front();
            }
            model.insert(id);
            order.push_back(id);
        }
        ASSERT_EQ(check(seen, id), again ? DedupSet::Seen::again : DedupSet::Seen::first)
            << "step " << step;
        ASSERT_EQ(seen.size(), model.size()) << "step " << step;
    }
    EXPECT_GT(seen.evicted(), 0u);
    EXPECT_GT(seen.expired(), 0u);
}
