// One host's part of a channel spread over [hosts] (what `up --host` runs and `units`
// writes): ipc between stages of a host, tcp where an edge crosses hosts, the same ports on
// every host, an edge's filter beside its upstream, and inputs from elsewhere marked.
#include "manifest/manifest.h"
#include "route/plan.h"
#include "route/wiring.h"

#include <gtest/gtest.h>

using namespace mh;
using namespace mh::route;

namespace {

using Words = std::vector<std::string>;

const char* k_channel = R"(
[hosts]
gw = "10.0.0.1"
core = "fd00::2"
db = "db.example.net"
[defaults]
base_port = 7500
[stage.gen]
run = "mh-gen"
host = "gw"
[stage.warm]
run = "mh-filter 'temperature > 2'"
from = ["gen"]
host = "core"
[stage.archive]
run = "mh-store append --db a"
from = ["warm"]
host = "db"
[stage.alerts]
run = "mh-store append --db b"
from = [{ stage = "warm", when = 'kind == "alert"' }]
host = "core"
)";

struct HostPlan {
    Plan plan;
    std::vector<TcpInput> tcp_inputs;
};

HostPlan plan_on(const manifest::Manifest& manifest, const std::string& host) {
    HostWiring wiring(manifest, host, "/run/" + host);
    PlanOptions options;
    options.address = [&](const std::string& group, uint32_t replica, const std::string& h,
                          const std::vector<std::string>& upstream_hosts) {
        return wiring.address(group, replica, h, upstream_hosts);
    };
    options.resolve = [](const std::string& program) { return "/bin/" + program; };
    Plan whole = make_plan(manifest, options);
    return {plan_for_host(whole, host, [&](const std::string& h) { return wiring.host_of(h); }), wiring.tcp_inputs()};
}

std::vector<std::string> names(const Plan& plan) {
    std::vector<std::string> result;
    for (const auto& process : plan.processes) result.push_back(process.name);
    return result;
}

}  // namespace

TEST(route, host_plans_agree_on_the_wiring) {
    auto loaded = manifest::load(k_channel, "span");
    ASSERT_TRUE(loaded.ok()) << loaded.errors.front().message;
    HostPlan gw = plan_on(loaded.manifest, "gw");
    HostPlan core = plan_on(loaded.manifest, "core");
    HostPlan db = plan_on(loaded.manifest, "db");

    EXPECT_EQ(names(gw.plan), (Words{"gen"}));
    EXPECT_EQ(names(core.plan), (Words{"warm", "warm->alerts", "alerts"}));  // the edge's filter beside warm
    EXPECT_EQ(names(db.plan), (Words{"archive"}));

    // gw connects to where core listens: core's IPv6 address in brackets, the first port.
    EXPECT_EQ(gw.plan.processes[0].argv, (Words{"/bin/mh-gen", "--out", ">tcp://[fd00::2]:7500"}));
    EXPECT_EQ(core.plan.processes[0].argv,
              (Words{"/bin/mh-filter", "temperature > 2", "--in", "@tcp://[fd00::2]:7500", "--out",
                     ">tcp://db.example.net:7501", "--out", ">ipc:///run/core/warm->alerts.1"}));
    // A name may not be the interface's own address: bind every interface.
    EXPECT_EQ(db.plan.processes[0].argv,
              (Words{"/bin/mh-store", "append", "--db", "a", "--in", "@tcp://*:7501"}));
    EXPECT_EQ(core.plan.processes[2].argv,
              (Words{"/bin/mh-store", "append", "--db", "b", "--in", "@ipc:///run/core/alerts.1"}));

    // Every host numbers the ports the same way.
    ASSERT_EQ(gw.tcp_inputs.size(), 2u);
    for (const auto* other : {&core, &db}) {
        ASSERT_EQ(other->tcp_inputs.size(), 2u);
        for (size_t i = 0; i < 2; ++i) {
            EXPECT_EQ(other->tcp_inputs[i].port, gw.tcp_inputs[i].port);
            EXPECT_EQ(other->tcp_inputs[i].host, gw.tcp_inputs[i].host);
        }
    }
    EXPECT_EQ(gw.tcp_inputs[0].process, "warm.1");
    EXPECT_EQ(gw.tcp_inputs[0].host, "core");
    EXPECT_EQ(gw.tcp_inputs[1].process, "archive.1");
    EXPECT_EQ(gw.tcp_inputs[1].port, 7501u);
}

TEST(route, host_plan_marks_inputs_from_other_hosts) {
    auto loaded = manifest::load(k_channel, "span");
    ASSERT_TRUE(loaded.ok());
    Plan core = plan_on(loaded.manifest, "core").plan;
    ASSERT_EQ(core.groups.size(), 3u);
    const GroupSpec* warm = core.find_group("warm");
    ASSERT_NE(warm, nullptr);
    EXPECT_TRUE(warm->remote_input);
    EXPECT_TRUE(warm->upstream.empty());
    const GroupSpec* edge = core.find_group("warm->alerts");
    EXPECT_FALSE(edge->remote_input);
    EXPECT_EQ(edge->upstream, (std::vector<size_t>{0}));  // renumbered within the host's plan
    EXPECT_EQ(core.find_group("alerts")->upstream, (std::vector<size_t>{1}));
    EXPECT_EQ(edge->processes, (std::vector<size_t>{1}));

    Plan gw = plan_on(loaded.manifest, "gw").plan;
    EXPECT_FALSE(gw.groups[0].remote_input);  // a source stays a source
}

TEST(route, without_hosts_every_stage_is_local) {
    auto loaded = manifest::load(R"(
[stage.gen]
run = "mh-gen"
[stage.archive]
run = "mh-store append --db a"
from = ["gen"]
)",
                                 "one");
    ASSERT_TRUE(loaded.ok());
    HostPlan here = plan_on(loaded.manifest, "anything");
    EXPECT_EQ(names(here.plan), (Words{"gen", "archive"}));
    EXPECT_TRUE(here.tcp_inputs.empty());
    EXPECT_EQ(here.plan.processes[1].input_bind, "@ipc:///run/anything/archive.1");
}
