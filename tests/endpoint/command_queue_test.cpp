// lib/endpoint CommandQueue on a real LMDB file: commands awaiting a reply survive reopening,
// oldest first, and a delivery that remembers its command inside take() commits with it.
#include "endpoint/command_queue.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace {

using mh::endpoint::CommandQueue;

struct QueueDir {
    std::string path;
    QueueDir() {
        char pattern[] = "/tmp/mh-command-queue-test.XXXXXX";
        path = mkdtemp(pattern);
    }
    ~QueueDir() { std::filesystem::remove_all(path); }
};

std::string ids(const std::vector<CommandQueue::Awaited>& awaited) {
    std::string out;
    for (const auto& a : awaited) out += a.gateway + "/" + a.correlation_id + " ";
    return out;
}

TEST(CommandQueue, AwaitedCommandsSurviveReopeningOldestFirst) {
    QueueDir dir;
    {
        CommandQueue queue(dir.path, 10);
        queue.await_reply({"gw-02", "c-9", "sensor-2", "reboot", 7});
        queue.await_reply({"gw-01", "c-1", "", "sync", 3});
        queue.await_reply({"gw-01", "c-2", "sensor-1", "blink", 5});
        queue.replied("gw-01", "c-2");
        queue.replied("gw-01", "c-unknown");  // nothing to remove: no harm
    }
    CommandQueue reopened(dir.path, 10);
    auto awaited = reopened.awaited();
    EXPECT_EQ(ids(awaited), "gw-01/c-1 gw-02/c-9 ");
    ASSERT_EQ(awaited.size(), 2u);
    EXPECT_EQ(awaited[1].source, "sensor-2");
    EXPECT_EQ(awaited[1].name, "reboot");
    EXPECT_EQ(awaited[1].order, 7u);
}

TEST(CommandQueue, ADeliveryRemembersItsCommandInTheSameTransaction) {
    QueueDir dir;
    CommandQueue queue(dir.path, 10);
    std::vector<std::byte> frame(16, std::byte{1});
    queue.push("gw-01", frame, INT64_MAX);
    queue.push("gw-01", frame, INT64_MAX);
    int n = 0;
    size_t delivered = queue.take("gw-01", 0, [&](mh::store::Bytes) {
        // What the lifecycle does on delivery; a transaction of its own would wait forever.
        queue.await_reply({"gw-01", "c-" + std::to_string(++n), "", "", static_cast<uint64_t>(n)});
        return n < 2;  // the second stays queued, its record kept all the same
    }, {});
    EXPECT_EQ(delivered, 1u);
    EXPECT_EQ(queue.size("gw-01"), 1u);
    EXPECT_EQ(ids(queue.awaited()), "gw-01/c-1 gw-01/c-2 ");
    queue.replied("gw-01", "c-1");  // outside take(): its own transaction
    EXPECT_EQ(ids(queue.awaited()), "gw-01/c-2 ");
}

}  // namespace
