// The plan of processes a manifest becomes: names, groups in data-flow order, and the exact
// wiring (binds, connects, tees, an edge's filter); and the counters read from metrics text.
#include "manifest/manifest.h"
#include "route/plan.h"
#include "route/scrape.h"

#include <gtest/gtest.h>

using namespace mh;
using namespace mh::route;

namespace {

Plan plan_of(const manifest::Manifest& m) {
    PlanOptions options;
    options.address = [](const std::string& group, uint32_t replica, const std::string&, const std::vector<std::string>&) {
        std::string path = "/run/x/" + group + "." + std::to_string(replica);
        return InputAddress{"@ipc://" + path, ">ipc://" + path};
    };
    options.resolve = [](const std::string& program) { return "/bin/" + program; };
    options.metrics = "127.0.0.1:0";
    return make_plan(m, options);
}

using Words = std::vector<std::string>;

}  // namespace

TEST(route, plan_wiring) {
    auto loaded = manifest::load(R"(
[stage.gen]
run = "mh-gen --count 5"
[stage.warm]
run = "mh-filter 'temperature > 2' --metrics 127.0.0.1:9100"
from = ["gen"]
replicas = 2
[stage.archive]
run = "mh-store append --db a"
from = ["gen", "warm"]
[stage.alerts]
run = "mh-store append --db b"
from = [{ stage = "warm", when = 'kind == "alert"' }]
)",
                                 "t");
    ASSERT_TRUE(loaded.ok()) << loaded.errors.front().message;
    Plan plan = plan_of(loaded.manifest);
    std::vector<std::string> groups;
    for (const auto& g : plan.groups) groups.push_back(g.name);
    EXPECT_EQ(groups, (Words{"gen", "warm", "archive", "warm->alerts", "alerts"}));
    ASSERT_EQ(plan.processes.size(), 6u);
    EXPECT_EQ(plan.processes[0].argv,
              (Words{"/bin/mh-gen", "--count", "5", "--out", ">ipc:///run/x/warm.1,>ipc:///run/x/warm.2", "--out",
                     ">ipc:///run/x/archive.1", "--metrics", "127.0.0.1:0"}));
    EXPECT_EQ(plan.processes[1].name, "warm.1");
    EXPECT_EQ(plan.processes[2].name, "warm.2");
    EXPECT_EQ(plan.processes[2].argv,
              (Words{"/bin/mh-filter", "temperature > 2", "--metrics", "127.0.0.1:9100", "--in", "@ipc:///run/x/warm.2",
                     "--out", ">ipc:///run/x/archive.1", "--out", ">ipc:///run/x/warm->alerts.1"}));
    EXPECT_EQ(plan.processes[4].name, "warm->alerts");
    EXPECT_EQ(plan.processes[4].argv,
              (Words{"/bin/mh-filter", "kind == \"alert\"", "--in", "@ipc:///run/x/warm->alerts.1", "--out",
                     ">ipc:///run/x/alerts.1", "--metrics", "127.0.0.1:0"}));
    EXPECT_EQ(plan.processes[5].argv, (Words{"/bin/mh-store", "append", "--db", "b", "--in", "@ipc:///run/x/alerts.1",
                                             "--metrics", "127.0.0.1:0"}));
    const GroupSpec* archive = plan.find_group("archive");
    ASSERT_NE(archive, nullptr);
    EXPECT_EQ(archive->upstream, (std::vector<size_t>{0, 1}));
    EXPECT_EQ(plan.find_group("alerts")->upstream, (std::vector<size_t>{3}));
    EXPECT_EQ(plan.find_group("warm->alerts")->upstream, (std::vector<size_t>{1}));
}

TEST(route, plan_gives_metrics_to_mh_tools_only) {
    // A stage may run any program; only mh tools know --metrics.
    auto loaded = manifest::load(R"(
[stage.hook]
run = "mosquitto_sub -t 'commands/gw-01/#' -v"
stdout = "commands.log"
[stage.gen]
run = "mh-gen --count 5"
destination = true
)",
                                 "t");
    ASSERT_TRUE(loaded.ok()) << loaded.errors.front().message;
    Plan plan = plan_of(loaded.manifest);
    ASSERT_EQ(plan.processes.size(), 2u);
    EXPECT_EQ(plan.processes[0].argv, (Words{"/bin/mosquitto_sub", "-t", "commands/gw-01/#", "-v"}));
    EXPECT_EQ(plan.processes[1].argv, (Words{"/bin/mh-gen", "--count", "5", "--metrics", "127.0.0.1:0"}));
}

TEST(route, flow_counts_from_metrics_text) {
    auto counts = parse_flow_counts(
        "# HELP mh_dropped_total Messages dropped, by reason\n"
        "# TYPE mh_dropped_total counter\n"
        "mh_dropped_total{reason=\"malformed\"} 2\n"
        "mh_dropped_total{reason=\"filtered\"} 40\n"
        "mh_messages_in_total 100\n"
        "mh_messages_out_total 58\n"
        "mh_errors_total 1\n"
        "mh_messages_in_total_other 5\n"
        "garbage\n");
    EXPECT_EQ(counts.in, 100u);
    EXPECT_EQ(counts.out, 58u);
    EXPECT_EQ(counts.dropped, 42u);
    EXPECT_EQ(counts.errors, 1u);
}
