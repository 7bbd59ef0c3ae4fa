// The gateway registry: a good file read whole, every kind of mistake reported with its
// line and column, id rules, and the glob authorization of sources.
#include "core/error.h"
#include "gateway/registry.h"
#include "gateway/token.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace {

using namespace mh;
using namespace mh::gateway;

const std::string k_key_hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const std::string k_fingerprint =
    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

const std::string k_good = R"([defaults]
messages_per_second = 100
bytes_per_second = 65536
max_connections = 2

[gateway.gw-0001]
token_key = ")" + k_key_hex + R"("
sources = ["sensor-0001-*", "site-a/*"]

[gateway."site.b:gw2"]
cert_sha256 = ")" + k_fingerprint + R"("
sources = ["site-b/[0-9]*"]
commands = false
messages_per_second = 5
burst_messages = 7
max_connections = 0
)";

// The message of the Error that parsing `text` throws, which must be a config error.
std::string error_of(const std::string& text) {
    try {
        Registry::parse(text, "gateways.toml");
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::config);
        return e.what();
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return {};
}

TEST(Registry, ReadsAGoodFile) {
    auto registry = Registry::parse(k_good, "gateways.toml");
    ASSERT_EQ(registry->size(), 2u);

    EXPECT_EQ(registry->defaults().messages_per_second, 100u);
    EXPECT_EQ(registry->defaults().burst_messages, 200u);  // follows the rate when unset
    EXPECT_EQ(registry->defaults().bytes_per_second, 65536u);
    EXPECT_EQ(registry->defaults().burst_bytes, 131072u);
    EXPECT_EQ(registry->defaults().max_connections, 2u);

    const Gateway* first = registry->find("gw-0001");
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(to_hex(first->token_key), k_key_hex);
    EXPECT_FALSE(first->cert_sha256);
    EXPECT_TRUE(first->commands);
    EXPECT_EQ(first->quotas.messages_per_second, 100u);  // the defaults
    EXPECT_EQ(first->quotas.max_connections, 2u);

    const Gateway* second = registry->find("site.b:gw2");
    ASSERT_NE(second, nullptr);
    EXPECT_TRUE(second->token_key.empty());
    ASSERT_TRUE(second->cert_sha256);
    EXPECT_EQ(fingerprint_text(*second->cert_sha256), k_fingerprint);
    EXPECT_FALSE(second->commands);
    EXPECT_EQ(second->quotas.messages_per_second, 5u);
    EXPECT_EQ(second->quotas.burst_messages, 7u);
    EXPECT_EQ(second->quotas.bytes_per_second, 65536u);
    EXPECT_EQ(second->quotas.max_connections, 0u);

    EXPECT_EQ(registry->find("gw-0002"), nullptr);
}

TEST(Registry, BuiltInDefaultsWithoutADefaultsTable) {
    auto registry = Registry::parse("[gateway.a]\ntoken_key = \"" + k_key_hex + "\"\n", "g.toml");
    EXPECT_EQ(registry->find("a")->quotas.messages_per_second, Quotas{}.messages_per_second);
    EXPECT_EQ(registry->find("a")->quotas.max_connections, Quotas{}.max_connections);
    EXPECT_TRUE(registry->find("a")->sources.empty());
    EXPECT_FALSE(registry->may_publish("a", "anything"));
}

TEST(Registry, EmptyFileIsAnEmptyRegistry) {
    EXPECT_EQ(Registry::parse("", "g.toml")->size(), 0u);
}

TEST(Registry, FindsByFingerprintInAnySpelling) {
    auto registry = Registry::parse(k_good, "gateways.toml");
    const Gateway* by_colons = registry->find_by_fingerprint(k_fingerprint);
    ASSERT_NE(by_colons, nullptr);
    EXPECT_EQ(by_colons->id, "site.b:gw2");
    EXPECT_EQ(registry->find_by_fingerprint("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
              by_colons);
    EXPECT_EQ(registry->find_by_fingerprint(*parse_fingerprint(k_fingerprint)), by_colons);
    EXPECT_EQ(registry->find_by_fingerprint(std::string(64, '0')), nullptr);
    EXPECT_EQ(registry->find_by_fingerprint("not hex"), nullptr);
    EXPECT_EQ(registry->find_by_fingerprint(""), nullptr);
}

TEST(Registry, AuthorizesSourcesByGlob) {
    auto registry = Registry::parse(k_good, "gateways.toml");
    EXPECT_TRUE(registry->may_publish("gw-0001", "sensor-0001-a"));
    EXPECT_TRUE(registry->may_publish("gw-0001", "sensor-0001-"));
    EXPECT_TRUE(registry->may_publish("gw-0001", "site-a/pump/3"));
    EXPECT_FALSE(registry->may_publish("gw-0001", "sensor-0002-a"));
    EXPECT_FALSE(registry->may_publish("gw-0001", "site-b/1"));
    EXPECT_FALSE(registry->may_publish("gw-0001", "xsensor-0001-a"));
    EXPECT_FALSE(registry->may_publish("gw-0001", ""));
    EXPECT_TRUE(registry->may_publish("site.b:gw2", "site-b/7x"));
    EXPECT_FALSE(registry->may_publish("site.b:gw2", "site-b/x7"));
    EXPECT_FALSE(registry->may_publish("nobody", "site-a/1"));
}

TEST(Registry, LoadsFromAFileAndHoldsByPointer) {
    std::string path = ::testing::TempDir() + "/registry_test.toml";
    std::ofstream(path) << k_good;
    std::shared_ptr<const Registry> registry = Registry::load(path);
    EXPECT_EQ(registry->size(), 2u);
    std::remove(path.c_str());

    try {
        Registry::load(path);
        ADD_FAILURE() << "a missing file loaded";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::config);
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
}

TEST(Registry, ErrorsNameFileLineAndColumn) {
    // Each case: the text, and what the message must contain (starting with file:line:column).
    const std::string key = "token_key = \"" + k_key_hex + "\"\n";
    struct Case {
        std::string text;
        std::string expected;
    };
    const Case cases[] = {
        {"[gateway.a]\n" + key + "colour = 1\n", "gateways.toml:3:1: unknown key 'colour'"},
        {"[defaults]\nspeed = 1\n", "gateways.toml:2:1: unknown key 'speed' in [defaults]"},
        {"[other]\nx = 1\n", "gateways.toml:1:2: unknown table 'other'"},
        {"x = 1\n", "gateways.toml:1:1: unknown table 'x'"},
        {"gateway = 3\n", "gateways.toml:1:11: gateway must be a table"},
        {"[gateway]\na = 1\n", "gateways.toml:2:5: gateway.a must be a table"},
        {"[defaults]\nmessages_per_second = \"fast\"\n", "gateways.toml:2:23: messages_per_second must be an integer"},
        {"[defaults]\nmax_connections = -1\n", "gateways.toml:2:19: max_connections must not be negative"},
        {"[defaults]\nburst_bytes = 1.5\n", "gateways.toml:2:15: burst_bytes must be an integer"},
        {"[gateway.a]\n" + key + "commands = \"yes\"\n", "gateways.toml:3:12: commands must be true or false"},
        {"[gateway.a]\n" + key + "sources = \"x*\"\n", "gateways.toml:3:11: sources must be an array"},
        {"[gateway.a]\n" + key + "sources = [\"x\", 3]\n", "gateways.toml:3:17: sources must hold strings"},
        {"[gateway.a]\n" + key + "sources = [\"x[ab\"]\n", "gateways.toml:3:12: bad pattern 'x[ab'"},
        {"[gateway.\"a/b\"]\n" + key, "gateways.toml:1:10: bad gateway id 'a/b'"},
        {"[gateway.\"a+\"]\n" + key, "gateways.toml:1:10: bad gateway id 'a+'"},
        {"[gateway.\"#\"]\n" + key, "gateways.toml:1:10: bad gateway id '#'"},
        {"[gateway.\"a b\"]\n" + key, "gateways.toml:1:10: bad gateway id 'a b'"},
        {"[gateway.\"\"]\n" + key, "gateways.toml:1:10: bad gateway id '': empty"},
        {"[gateway.\"a\\u0001\"]\n" + key, "gateways.toml:1:10: bad gateway id"},
        {"[gateway." + std::string(129, 'g') + "]\n" + key, "gateways.toml:1:10: bad gateway id"},
        {"[gateway.a]\nsources = [\"x\"]\n", "gateways.toml:1:10: gateway.a has no identity"},
        {"[gateway.a]\ntoken_key = \"xyz0\"\n", "gateways.toml:2:13: token_key is not hex"},
        {"[gateway.a]\ntoken_key = \"abc\"\n", "gateways.toml:2:13: token_key is not hex"},
        {"[gateway.a]\ntoken_key = \"00ff\"\n", "gateways.toml:2:13: token_key must be 16 to 64 bytes"},
        {"[gateway.a]\ntoken_key = 12\n", "gateways.toml:2:13: token_key must be a string"},
        {"[gateway.a]\ncert_sha256 = \"AB:CD\"\n", "gateways.toml:2:15: cert_sha256 is not a SHA-256 fingerprint"},
        {"[gateway.a]\ncert_sha256 = \"" + std::string(64, 'z') + "\"\n",
         "gateways.toml:2:15: cert_sha256 is not a SHA-256 fingerprint"},
        {"[gateway.a]\ncert_sha256 = \"" + k_fingerprint + "\"\n[gateway.b]\ncert_sha256 = \"" + k_fingerprint +
             "\"\n",
         "gateways.toml:4:15: gateway.b has the same cert_sha256 as gateway.a"},
        {"[gateway.a]\n" + key + "[gateway.a]\n" + key, "gateways.toml:3:"},  // toml++: redefinition
        {"[gateway.a\n", "gateways.toml:1:"},                                   // toml++: syntax
        {"[gateway.a]\n" + key + "token_key = \"" + k_key_hex + "\"\n", "gateways.toml:3:"},
    };
    for (const Case& c : cases) {
        std::string message = error_of(c.text);
        EXPECT_NE(message.find(c.expected), std::string::npos) << "expected '" << c.expected << "' in: " << message;
    }
}

TEST(GatewayId, RefusesWildcardsSlashesControlsAndLength) {
    EXPECT_TRUE(valid_gateway_id("gw-0001"));
    EXPECT_TRUE(valid_gateway_id("site.a:gw_2@x"));
    EXPECT_TRUE(valid_gateway_id(std::string(k_max_gateway_id_bytes, 'g')));
    EXPECT_FALSE(valid_gateway_id(std::string(k_max_gateway_id_bytes + 1, 'g')));
    EXPECT_FALSE(valid_gateway_id(""));
    for (std::string bad : {"a+b", "a#", "#", "+", "a/b", "/", "a b", "a\tb", "a\nb", "a\x7f", "caf\xc3\xa9"})
        EXPECT_FALSE(valid_gateway_id(bad)) << bad;
    EXPECT_FALSE(valid_gateway_id(std::string("a\0b", 3)));
    EXPECT_NE(check_gateway_id("a#")->find("wildcard"), std::string::npos);
}

TEST(Fingerprint, ParsesAndPrints) {
    auto fingerprint = parse_fingerprint(k_fingerprint);
    ASSERT_TRUE(fingerprint);
    EXPECT_EQ(fingerprint_text(*fingerprint), k_fingerprint);
    auto lower = parse_fingerprint("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    ASSERT_TRUE(lower);
    EXPECT_EQ(*lower, *fingerprint);
    EXPECT_FALSE(parse_fingerprint(k_fingerprint.substr(3)));
    EXPECT_FALSE(parse_fingerprint(std::string(k_fingerprint).replace(2, 1, "-")));
    EXPECT_FALSE(parse_fingerprint(std::string(63, 'a')));
}

}  // namespace
