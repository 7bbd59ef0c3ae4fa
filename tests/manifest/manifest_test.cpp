// The manifest loader: what a good manifest becomes, and each kind of mistake reported at
// its line and column with what to do, all of them in one pass.
#include "manifest/graph.h"
#include "manifest/manifest.h"

#include <gtest/gtest.h>

using namespace mh::manifest;

namespace {

LoadResult load_text(std::string_view text) { return load(text, "hint"); }

// "LINE:COLUMN message" of every error, for compact expectations.
std::vector<std::string> errors_of(const LoadResult& result) {
    std::vector<std::string> out;
    for (const auto& e : result.errors) out.push_back(std::to_string(e.where.line) + ":" + std::to_string(e.where.column) + " " + e.message);
    return out;
}

bool has_error(const LoadResult& result, std::string_view at, std::string_view needle) {
    for (const auto& e : errors_of(result))
        if (e.starts_with(at) && e.find(needle) != std::string::npos) return true;
    return false;
}

constexpr std::string_view k_good = R"(
[channel]
name = "cold-chain"

[hosts]
edge-1 = "10.0.0.5"
core = { address = "core.example.net" }

[defaults]
host = "edge-1"
restart_delay = "250ms"
env = { TZ = "UTC" }

[stage.ingest]
run = "mh-gen --count 10"

[stage.hot]
run = ["mh-filter", "temperature > 8"]
from = "ingest"
replicas = 2
env = { MH_X = 1 }

[stage.archive]
run = "mh-store append --db '/var/lib/mh/cold chain'"
from = ["ingest", { stage = "hot", when = "kind == \"alert\"" }]
host = "core"
restart = "always"
)";

}  // namespace

TEST(manifest, a_good_manifest_in_file_order) {
    auto result = load_text(k_good);
    ASSERT_TRUE(result.ok()) << errors_of(result).front();
    const Manifest& m = result.manifest;
    EXPECT_EQ(m.name, "cold-chain");
    ASSERT_EQ(m.stages.size(), 3u);
    EXPECT_EQ(m.stages[0].name, "ingest");  // file order, not toml++'s sorted order
    EXPECT_EQ(m.stages[1].name, "hot");
    EXPECT_EQ(m.stages[2].name, "archive");
    EXPECT_EQ(m.stages[0].argv, (std::vector<std::string>{"mh-gen", "--count", "10"}));
    EXPECT_EQ(m.stages[1].argv, (std::vector<std::string>{"mh-filter", "temperature > 8"}));
    EXPECT_EQ(m.stages[2].argv.back(), "/var/lib/mh/cold chain");
    EXPECT_EQ(m.stages[1].replicas, 2u);
    EXPECT_EQ(m.stages[1].host, "edge-1");  // from [defaults]
    EXPECT_EQ(m.stages[2].host, "core");
    EXPECT_EQ(m.stages[1].env, (Environment{{"TZ", "UTC"}, {"MH_X", "1"}}));
    EXPECT_EQ(m.stages[0].restart.delay_ns, 250'000'000);
    EXPECT_EQ(m.stages[2].restart.policy, RestartPolicy::always);
    ASSERT_EQ(m.stages[2].inputs.size(), 2u);
    EXPECT_EQ(m.stages[2].inputs[0].when, "");
    EXPECT_EQ(m.stages[2].inputs[1].stage, "hot");
    EXPECT_EQ(m.stages[2].inputs[1].when, "kind == \"alert\"");
    EXPECT_EQ(m.find_host("core")->address, "core.example.net");
    EXPECT_EQ(m.topological_order(), (std::vector<size_t>{0, 1, 2}));
    EXPECT_EQ(m.readers("ingest"), (std::vector<size_t>{1, 2}));
    EXPECT_EQ(summary(m), "3 stages (1 source, 1 destination), 3 edges (1 conditional), 2 hosts, 5 processes");
}

TEST(manifest, a_stage_when_applies_to_every_input) {
    auto result = load_text(R"(
[stage.a]
run = "mh-gen"
[stage.b]
run = "mh-gen"
[stage.c]
run = "mh-store append --db x"
from = ["a", "b"]
when = "temperature > 3"
)");
    ASSERT_TRUE(result.ok());
    for (const auto& input : result.manifest.stages[2].inputs) EXPECT_EQ(input.when, "temperature > 3");
    EXPECT_EQ(result.manifest.name, "hint");
    EXPECT_EQ(result.manifest.stages[0].host, "");  // no [hosts]: local
}

TEST(manifest, every_mistake_at_its_place) {
    auto result = load_text(R"([channel]
name = "bad name"
colour = "red"

[stage.gen]
run = "mh-gen --count 10"
replica = 2

[stage.hot]
run = "mh-filter 'temperature > 30' | mh-cat"
from = ["gen", "ghost"]
host = "edge-9"

[stage.a]
run = "mh-filter"
from = ["gen", "b"]

[stage.b]
run = "mh-filter"
from = [{stage = "a", when = "temperature >> 3"}]

[stage.sink]
run = "mh-cat"
from = ["hot"]
)");
    EXPECT_TRUE(has_error(result, "2:8 ", "channel name 'bad name' is not usable")) << errors_of(result).front();
    EXPECT_TRUE(has_error(result, "3:1 ", "unknown key 'colour' in [channel]"));
    EXPECT_TRUE(has_error(result, "7:1 ", "unknown key 'replica' in [stage.gen] (did you mean 'replicas'?)"));
    EXPECT_TRUE(has_error(result, "10:37 ", "'|' is shell syntax"));
    EXPECT_TRUE(has_error(result, "11:16 ", "reads from 'ghost', which is not a stage"));
    EXPECT_TRUE(has_error(result, "12:8 ", "host 'edge-9' is not declared: add it to [hosts]"));
    EXPECT_TRUE(has_error(result, "20:18 ", "a cycle: a -> b -> a"));
    EXPECT_TRUE(has_error(result, "20:44 ", "bad when condition on the edge from a"));
    EXPECT_TRUE(has_error(result, "22:8 ", "nothing reads from stage sink and it is not a destination"));
    EXPECT_EQ(result.errors.size(), 9u);
    for (size_t i = 1; i < result.errors.size(); ++i)
        EXPECT_LE(result.errors[i - 1].where.line, result.errors[i].where.line) << "sorted by place";
    // The condition's detail shows the caret under the second '>'.
    for (const auto& e : result.errors) {
        if (e.message.starts_with("bad when")) {
            EXPECT_EQ(e.detail, "temperature >> 3\n             ^");
        }
    }
}

TEST(manifest, values_of_the_wrong_kind) {
    auto result = load_text(R"([defaults]
restart = "sometimes"
restart_delay = "soon"
base_port = 70000
[stage.a]
run = 42
replicas = 0
from = []
when = "true"
destination = "yes"
env = { "1X" = "a", Y = [1] }
[stage.b]
from = [3]
stdout = "out.frames"
[stage]
c = 5
)");
    auto errors = errors_of(result);
    EXPECT_TRUE(has_error(result, "2:11 ", "must be \"on-failure\", \"always\" or \"never\""));
    EXPECT_TRUE(has_error(result, "3:17 ", "must be a duration"));
    EXPECT_TRUE(has_error(result, "4:13 ", "base_port must be an integer"));
    EXPECT_TRUE(has_error(result, "6:7 ", "run of stage a must be a command line string"));
    EXPECT_TRUE(has_error(result, "7:12 ", "replicas must be an integer from 1 to 64"));
    EXPECT_TRUE(has_error(result, "8:8 ", "from of stage a is empty"));
    EXPECT_TRUE(has_error(result, "9:8 ", "has a when condition but no from"));
    EXPECT_TRUE(has_error(result, "10:15 ", "destination must be true or false"));
    EXPECT_TRUE(has_error(result, "11:9 ", "'1X' is not an environment variable name"));
    EXPECT_TRUE(has_error(result, "11:25 ", "env Y must be a string"));
    EXPECT_TRUE(has_error(result, "12:8 ", "stage b has no run key"));
    EXPECT_TRUE(has_error(result, "13:9 ", "a from entry must be a stage name"));
    EXPECT_TRUE(has_error(result, "16:1 ", "stage.c must be a table"));
}

TEST(manifest, hosts_rules) {
    auto two_hosts = load_text(R"([hosts]
a = "10.0.0.1"
b = "10.0.0.2"
[stage.s]
run = "mh-store append --db x"
)");
    EXPECT_TRUE(has_error(two_hosts, "4:8 ", "stage s has no host and [hosts] declares 2"));
    auto one_host = load_text(R"([hosts]
a = "10.0.0.1"
[stage.s]
run = "mh-store append --db x"
)");
    ASSERT_TRUE(one_host.ok());
    EXPECT_EQ(one_host.manifest.stages[0].host, "a");
    auto bad_address = load_text(R"([hosts]
a = "10.0.0.1/24"
[stage.s]
run = "mh-store append --db x"
)");
    EXPECT_TRUE(has_error(bad_address, "2:5 ", "host a needs an address"));
}

TEST(manifest, toml_syntax_errors_have_a_place) {
    auto result = load_text("[stage.a]\nrun = \"mh-gen\nfrom = 1\n");
    ASSERT_EQ(result.errors.size(), 1u);
    EXPECT_EQ(result.errors[0].where.line, 2u);
    EXPECT_TRUE(result.errors[0].message.starts_with("not valid TOML: "));
    auto empty = load_text("");
    EXPECT_TRUE(has_error(empty, "0:0 ", "the manifest has no stages"));
}

TEST(manifest, destinations) {
    Stage stage;
    stage.argv = {"/usr/bin/mh-store", "append"};
    EXPECT_TRUE(is_destination(stage));
    stage.argv = {"mh-cat", "--to", "json", "--out", "x.jsonl"};
    EXPECT_TRUE(is_destination(stage));
    stage.argv = {"mh-filter", "x > 1"};
    EXPECT_FALSE(is_destination(stage));
    stage.stdout_path = "f";
    EXPECT_TRUE(is_destination(stage));
}

TEST(manifest, split_like_a_shell_and_quote_back) {
    EXPECT_EQ(*split_command(R"(a  'b c' "d \"e\" \$f" g\ h '')"),
              (std::vector<std::string>{"a", "b c", "d \"e\" $f", "g h", ""}));
    SplitError error;
    EXPECT_FALSE(split_command("a 'b", &error));
    EXPECT_EQ(error.offset, 2u);
    EXPECT_FALSE(split_command("a \"$HOME\"", &error));
    EXPECT_EQ(error.offset, 3u);
    EXPECT_FALSE(split_command("a > b", &error));
    EXPECT_FALSE(split_command("a\\", &error));
    std::vector<std::string> words = {"mh-filter", "kind == \"alert\"", "50%", "$x", "plain-word_1.2:3"};
    EXPECT_EQ(join_command(words), R"(mh-filter "kind == \"alert\"" 50% "\$x" plain-word_1.2:3)");
}

TEST(manifest, dot_and_text) {
    auto result = load_text(k_good);
    ASSERT_TRUE(result.ok());
    std::string dot = to_dot(result.manifest);
    EXPECT_NE(dot.find("subgraph \"cluster_edge-1\""), std::string::npos) << dot;
    EXPECT_NE(dot.find("\"hot\" -> \"archive\" [label=\"kind == \\\"alert\\\"\", style=dashed, color=blue"),
              std::string::npos)
        << dot;
    EXPECT_NE(dot.find("hot \u00d72"), std::string::npos);
    std::string text = to_text(result.manifest);
    EXPECT_NE(text.find("hot x2 (handler, on edge-1)"), std::string::npos) << text;
    EXPECT_NE(text.find("from  hot when kind == \"alert\" (tcp from edge-1)"), std::string::npos) << text;
}

TEST(manifest, an_unclosed_quote_in_run_at_its_line_and_column) {
    auto one_line = load_text("[channel]\nname = \"x\"\n[stage.a]\nrun = \"mh-gen --bogus 'open\"\ndestination = true\n");
    ASSERT_EQ(one_line.errors.size(), 1u);
    EXPECT_TRUE(has_error(one_line, "4:23 ", "this single quote is not closed")) << errors_of(one_line).front();
    EXPECT_EQ(one_line.errors[0].detail, "mh-gen --bogus 'open\n               ^");

    // In a multi-line string: the line of the quote, its column in that line, that line shown.
    auto multi_line = load_text("[channel]\nname = \"x\"\n[stage.a]\nrun = \"\"\"mh-gen --rate 1\n"
                                "   --bogus 'open\"\"\"\ndestination = true\n");
    ASSERT_EQ(multi_line.errors.size(), 1u);
    EXPECT_TRUE(has_error(multi_line, "5:12 ", "this single quote is not closed")) << errors_of(multi_line).front();
    EXPECT_EQ(multi_line.errors[0].detail, "   --bogus 'open\n           ^");
    auto first_line = load_text("[channel]\nname = \"x\"\n[stage.a]\nrun = \"\"\"mh-gen 'open\n --x\"\"\"\n"
                                "destination = true\n");
    EXPECT_TRUE(has_error(first_line, "4:17 ", "this single quote is not closed")) << errors_of(first_line).front();
}
