// Filter, message by message: pass and reject, every transform, --set chaining, alerts
// with their fields and deterministic ids, barriers, consistent sampling, deduplication,
// and the errors a bad rule gives.
#include "core/error.h"
#include "filter/filter.h"
#include "message/id.h"
#include "message/scratch_builder.h"

#include <fmt/format.h>
#include "support/support.h"

#include <gtest/gtest.h>

#include <cstring>
#include <variant>

using namespace mh;
using namespace mh::filter;

namespace {

constexpr int64_t k_time = 1'767'225'600'000'000'000;  // 2026-01-01T00:00:00Z

using FieldValue = std::variant<double, int64_t, std::string, bool>;

// A message to feed the filter, built field by field.
struct TestMessage {
    MessageId id = IdGenerator(1).next(k_time);
    bool with_id = true;
    std::string source = "sensor-000001";
    std::string kind = "telemetry";
    std::vector<std::pair<std::string, FieldValue>> fields;

    TestMessage& with(std::string name, FieldValue value) {
        fields.emplace_back(std::move(name), std::move(value));
        return *this;
    }

    std::vector<capnp::word> frame() const {
        ScratchBuilder scratch;
        auto m = scratch.start();
        if (with_id) m.setId(capnp::Data::Reader(id.data(), id.size()));
        m.setTime(k_time);
        m.setIngested(k_time + 5);
        m.setSource(source);
        m.setGateway("gw-01");
        m.setKind(kind);
        m.setBody(capnp::Data::Reader(reinterpret_cast<const uint8_t*>("raw"), 3));
        auto list = m.initFields(static_cast<unsigned>(fields.size()));
        for (unsigned i = 0; i < fields.size(); ++i) {
            list[i].setName(fields[i].first);
            auto v = list[i].getValue();
            std::visit(
                [&](const auto& x) {
                    using T = std::decay_t<decltype(x)>;
                    if constexpr (std::is_same_v<T, double>)
                        v.setFloat(x);
                    else if constexpr (std::is_same_v<T, int64_t>)
                        v.setInt(x);
                    else if constexpr (std::is_same_v<T, std::string>)
                        v.setText(x);
                    else
                        v.setBool(x);
                },
                fields[i].second);
        }
        auto words = test::frame_words(scratch.builder());
        return words;
    }
};

std::vector<capnp::word> barrier_frame(uint64_t number) {
    ScratchBuilder scratch;
    scratch.start().getControl().initBarrier().setNumber(number);
    auto words = test::frame_words(scratch.builder());
    return words;
}

wire::Frame as_frame(const std::vector<capnp::word>& words) { return {words.data(), words.size()}; }

// What a frame says, in a form that reads well in assertions.
struct Seen {
    std::string id, source, gateway, kind, body;
    int64_t time = 0, ingested = 0;
    std::string fields;  // "name=value ...": floats with a point, text quoted

    explicit Seen(const wire::Frame& frame) {
        capnp::FlatArrayMessageReader reader(kj::arrayPtr(frame.words, frame.word_count));
        auto m = reader.getRoot<schema::Message>();
        char text[k_id_text_chars];
        id = std::string(
            text, format_id(std::span<const uint8_t>(m.getId().begin(), m.getId().size()), text));
        source = m.getSource();
        gateway = m.getGateway();
        kind = m.getKind();
        body = std::string(reinterpret_cast<const char*>(m.getBody().begin()), m.getBody().size());
        time = m.getTime();
        ingested = m.getIngested();
        for (auto f : m.getFields()) {
            if (!fields.empty()) fields += ' ';
            auto v = f.getValue();
            std::string value;
            switch (v.which()) {
                case schema::Field::Value::FLOAT:
                    value = fmt::format("{:#}", v.getFloat());
                    break;
                case schema::Field::Value::INT:
                    value = std::to_string(v.getInt());
                    break;
                case schema::Field::Value::TEXT:
                    value = fmt::format("\"{}\"", v.getText().cStr());
                    break;
                case schema::Field::Value::BOOL:
                    value = v.getBool() ? "true" : "false";
                    break;
                case schema::Field::Value::JSON:
                    value = v.getJson();
                    break;
            }
            fields += fmt::format("{}={}", f.getName().cStr(), value);
        }
    }
};

std::string id_text(const MessageId& id) {
    char text[k_id_text_chars];
    return std::string(text, format_id(id, text));
}

// A filter with a quiet log, and a frame kept alive for as long as its decision is read.
struct Harness {
    Log log{"mh-filter", LogLevel::error};
    Filter filter;
    std::vector<capnp::word> input;

    explicit Harness(const FilterRules& rules) : filter(rules, wire::FrameLimits{}, log) {}

    Decision run(const TestMessage& message, int64_t now_ns = k_time) {
        input = message.frame();
        return filter.process(as_frame(input), now_ns);
    }
};

FilterRules where(std::string expression) {
    FilterRules rules;
    rules.expression = std::move(expression);
    return rules;
}

TestMessage reading(double temperature, double humidity) {
    return TestMessage{}.with("temperature", temperature).with("humidity", humidity);
}

}  // namespace

TEST(Filter, PassesTheMessagesForWhichTheExpressionHolds) {
    Harness h(where("temperature > 30 and humidity < 50"));
    EXPECT_EQ(h.run(reading(31.5, 40)).verdict, Verdict::pass);
    EXPECT_EQ(h.run(reading(29.0, 40)).verdict, Verdict::filtered);
    EXPECT_EQ(h.run(reading(31.5, 60)).verdict, Verdict::filtered);
    EXPECT_EQ(h.filter.stats().passed, 1u);
    EXPECT_EQ(h.filter.stats().filtered, 2u);
}

TEST(Filter, APassingMessageWithoutTransformsGoesOutAsItsOwnBytes) {
    Harness h(where("temperature > 30"));
    Decision d = h.run(reading(31.5, 40));
    EXPECT_EQ(d.frame.words, h.input.data());  // no rebuild: the input frame itself
    EXPECT_TRUE(d.alerts.empty());
    EXPECT_EQ(h.filter.stats().rebuilt, 0u);
}

TEST(Filter, InvertPassesTheRest) {
    FilterRules rules = where("temperature > 30");
    rules.invert = true;
    Harness h(rules);
    EXPECT_EQ(h.run(reading(31.5, 40)).verdict, Verdict::filtered);
    EXPECT_EQ(h.run(reading(29.0, 40)).verdict, Verdict::pass);
    // A message without the field fails the comparison, so the inverted filter passes it.
    EXPECT_EQ(h.run(TestMessage{}.with("humidity", 40.0)).verdict, Verdict::pass);
}

TEST(Filter, AMissingFieldNeverPasses) {
    Harness h(where("temperature > 30"));
    EXPECT_EQ(h.run(TestMessage{}.with("humidity", 40.0)).verdict, Verdict::filtered);
    EXPECT_EQ(h.run(TestMessage{}.with("temperature", std::string("hot"))).verdict,
              Verdict::filtered);
}

TEST(Filter, WithoutAnExpressionEveryMessagePasses) {
    Harness h(FilterRules{});
    EXPECT_EQ(h.run(reading(0, 0)).verdict, Verdict::pass);
    EXPECT_EQ(h.run(TestMessage{}).verdict, Verdict::pass);
}

TEST(Filter, HeadersCanBeTested) {
    Harness h(where("source like \"sensor-0*\" and kind == \"telemetry\""));
    EXPECT_EQ(h.run(reading(1, 1)).verdict, Verdict::pass);
    TestMessage other = reading(1, 1);
    other.source = "pump-7";
    EXPECT_EQ(h.run(other).verdict, Verdict::filtered);
}

TEST(Filter, SetAppendsAComputedFieldAndCopiesTheHeader) {
    FilterRules rules;
    rules.sets = {"temperature_f=temperature * 9 / 5 + 32"};
    Harness h(rules);
    TestMessage message = reading(20, 40);
    Decision d = h.run(message);
    ASSERT_EQ(d.verdict, Verdict::pass);
    Seen out(d.frame);
    EXPECT_EQ(out.fields, "temperature=20.0 humidity=40.0 temperature_f=68.0");
    EXPECT_EQ(out.id, id_text(message.id));
    EXPECT_EQ(out.time, k_time);
    EXPECT_EQ(out.ingested, k_time + 5);
    EXPECT_EQ(out.source, "sensor-000001");
    EXPECT_EQ(out.gateway, "gw-01");
    EXPECT_EQ(out.kind, "telemetry");
    EXPECT_EQ(out.body, "raw");
}

TEST(Filter, SetsRunInOrderAndSeeTheOnesBefore) {
    FilterRules rules;
    rules.sets = {"double=temperature * 2", "more=double + 1", "temperature=round(temperature)"};
    Harness h(rules);
    Seen out(h.run(reading(20.4, 40)).frame);
    // An existing field keeps its place; new ones follow in --set order.
    EXPECT_EQ(out.fields, "temperature=20.0 humidity=40.0 double=40.8 more=41.8");
}

TEST(Filter, SetValuesKeepTheirTypes) {
    FilterRules rules;
    rules.sets = {"hot=temperature > 30", "count=3 + 4", "label=upper(source)", "ratio=7 / 2"};
    Harness h(rules);
    Seen out(h.run(reading(31, 40)).frame);
    EXPECT_EQ(out.fields,
              "temperature=31.0 humidity=40.0 hot=true count=7 label=\"SENSOR-000001\" ratio=3.5");
}

TEST(Filter, ASetWhoseValueIsMissingRemovesTheField) {
    FilterRules rules;
    rules.sets = {"humidity=humidity / 0", "nothing=absent_field + 1"};
    Harness h(rules);
    Seen out(h.run(reading(20, 40)).frame);
    EXPECT_EQ(out.fields, "temperature=20.0");
}

TEST(Filter, NowIsTheTimeGivenForTheBatch) {
    FilterRules rules;
    rules.sets = {"age_s=(now() - time) / 1s"};
    Harness h(rules);
    Seen out(h.run(reading(20, 40), k_time + 90'000'000'000).frame);
    EXPECT_EQ(out.fields, "temperature=20.0 humidity=40.0 age_s=90.0");
}

TEST(Filter, RenameKeepsThePlace) {
    FilterRules rules;
    rules.renames = {"temperature=temp_c"};
    Harness h(rules);
    Seen out(h.run(reading(20, 40)).frame);
    EXPECT_EQ(out.fields, "temp_c=20.0 humidity=40.0");
}

TEST(Filter, ARenamedFieldReplacesOneThatHasItsNewName) {
    FilterRules rules;
    rules.renames = {"raw=temperature"};
    Harness h(rules);
    Seen out(h.run(TestMessage{}.with("temperature", 1.0).with("raw", 2.0)).frame);
    EXPECT_EQ(out.fields, "temperature=2.0");
    // Without a field to rename, the other is left alone.
    Seen alone(h.run(TestMessage{}.with("temperature", 1.0)).frame);
    EXPECT_EQ(alone.fields, "temperature=1.0");
}

TEST(Filter, RenamesDoNotChain) {
    FilterRules rules;
    rules.renames = {"a=b", "b=c"};
    Harness h(rules);
    Seen out(h.run(TestMessage{}.with("a", int64_t{1}).with("b", int64_t{2})).frame);
    EXPECT_EQ(out.fields, "b=1 c=2");
}

TEST(Filter, DropAndKeepNameFieldsAsTheyAreAfterRename) {
    FilterRules drop;
    drop.renames = {"temperature=temp_c"};
    drop.drop = {"humidity"};
    Harness dropping(drop);
    EXPECT_EQ(Seen(dropping.run(reading(20, 40).with("battery", int64_t{90})).frame).fields,
              "temp_c=20.0 battery=90");

    FilterRules keep;
    keep.renames = {"temperature=temp_c"};
    keep.keep = {"temp_c", "battery"};
    Harness keeping(keep);
    EXPECT_EQ(
        Seen(keeping.run(reading(20, 40).with("battery", int64_t{90}).with("pressure", 1013.0))
                 .frame)
            .fields,
        "temp_c=20.0 battery=90");
}

TEST(Filter, KindRelabelsThePassingMessages) {
    FilterRules rules = where("temperature > 30");
    rules.kind = "hot";
    Harness h(rules);
    Seen out(h.run(reading(31, 40)).frame);
    EXPECT_EQ(out.kind, "hot");
    EXPECT_EQ(out.fields, "temperature=31.0 humidity=40.0");
}

TEST(Filter, ATransformThatChangesNothingKeepsTheInputBytes) {
    FilterRules rules;
    rules.drop = {"pressure"};
    rules.renames = {"battery=battery_pct"};
    Harness h(rules);
    Decision d = h.run(reading(20, 40));
    EXPECT_EQ(d.frame.words, h.input.data());
    EXPECT_EQ(h.filter.stats().rebuilt, 0u);
}

TEST(Filter, AnAlertCarriesTheRuleTheOriginAndTheValuesInvolved) {
    FilterRules rules;
    rules.alerts = {"too_hot=temperature > 30 and humidity < 50"};
    Harness h(rules);
    TestMessage message = reading(31.5, 40).with("battery", int64_t{90});
    Decision d = h.run(message);
    ASSERT_EQ(d.verdict, Verdict::pass);
    EXPECT_EQ(d.frame.words, h.input.data());  // the data message itself is unchanged
    ASSERT_EQ(d.alerts.size(), 1u);
    Seen alert(d.alerts[0]);
    EXPECT_EQ(alert.kind, "alert");
    EXPECT_EQ(alert.source, "sensor-000001");
    EXPECT_EQ(alert.gateway, "gw-01");
    EXPECT_EQ(alert.time, k_time);
    EXPECT_EQ(alert.ingested, k_time + 5);
    EXPECT_EQ(alert.body, "");
    EXPECT_EQ(alert.fields,
              fmt::format("rule=\"too_hot\" expr=\"temperature > 30 and humidity < 50\" "
                          "origin_id=\"{}\" temperature=31.5 humidity=40.0",
                          id_text(message.id)));
    EXPECT_EQ(h.run(reading(25, 40)).alerts.size(), 0u);
    EXPECT_EQ(h.filter.stats().alerts, 1u);
}

TEST(Filter, AnUnnamedRuleIsNamedByItsText) {
    FilterRules rules;
    rules.alerts = {"temperature > 30", "dry = humidity < 20"};
    Harness h(rules);
    Decision d = h.run(reading(31, 10));
    ASSERT_EQ(d.alerts.size(), 2u);
    EXPECT_EQ(
        Seen(d.alerts[0]).fields.rfind("rule=\"temperature > 30\" expr=\"temperature > 30\" ", 0),
        0u);
    EXPECT_EQ(Seen(d.alerts[1]).fields.rfind("rule=\"dry\" expr=\"humidity < 20\" ", 0), 0u);
}

TEST(Filter, AlertNamesAreLeadingIdentifiersBeforeASingleEquals) {
    EXPECT_EQ(split_alert_rule("hot=temperature > 30").name, "hot");
    EXPECT_EQ(split_alert_rule("hot=temperature > 30").expression, "temperature > 30");
    EXPECT_EQ(split_alert_rule("  motor.rpm-high = rpm > 3000").name, "motor.rpm-high");
    EXPECT_EQ(split_alert_rule("level == 3").name, "level == 3");
    EXPECT_EQ(split_alert_rule("gateway =~ \"^gw\"").name, "gateway =~ \"^gw\"");
    EXPECT_EQ(split_alert_rule("temperature > 30").expression, "temperature > 30");
}

TEST(Filter, AlertIdsAreDerivedDeterministically) {
    FilterRules rules;
    rules.alerts = {"hot=temperature > 30", "warm=temperature > 20"};
    Harness first(rules), replay(rules);
    TestMessage message = reading(31, 40);
    std::string hot = Seen(first.run(message).alerts[0]).id;
    std::string warm = Seen(first.run(message).alerts[1]).id;
    EXPECT_EQ(Seen(replay.run(message).alerts[0]).id, hot);  // a replay gives the same ids
    EXPECT_NE(hot, warm);                                    // each rule its own
    EXPECT_NE(hot, id_text(message.id));
    EXPECT_EQ(hot, id_text(derive_alert_id(message.id, "hot")));
    // Still a UUIDv7 of the original's millisecond.
    MessageId derived = derive_alert_id(message.id, "hot");
    EXPECT_TRUE(std::equal(derived.begin(), derived.begin() + 6, message.id.begin()));
    EXPECT_EQ(derived[6] >> 4, 7);
    EXPECT_EQ(derived[8] & 0xc0, 0x80);
}

TEST(Filter, AlertsSeeSetFieldsUnderTheInputsNames) {
    FilterRules rules;
    rules.sets = {"temperature_f=temperature * 9 / 5 + 32"};
    rules.renames = {"temperature=temp_c"};
    rules.alerts = {"hot_f=temperature_f > 86 and temperature > 29"};
    Harness h(rules);
    Decision d = h.run(reading(31, 40));
    EXPECT_EQ(Seen(d.frame).fields, "temp_c=31.0 humidity=40.0 temperature_f=87.8");
    ASSERT_EQ(d.alerts.size(), 1u);
    EXPECT_NE(Seen(d.alerts[0]).fields.find("temperature_f=87.8 temperature=31.0"),
              std::string::npos);
}

TEST(Filter, OnlyPassingMessagesRaiseAlerts) {
    FilterRules rules = where("humidity < 50");
    rules.alerts = {"hot=temperature > 30"};
    Harness h(rules);
    Decision d = h.run(reading(31, 60));
    EXPECT_EQ(d.verdict, Verdict::filtered);
    EXPECT_TRUE(d.alerts.empty());
}

TEST(Filter, BarriersPassBeforeAnyRule) {
    FilterRules rules = where("temperature > 30");
    rules.dedup = "1m";
    rules.sample = 0.01;
    Harness h(rules);
    auto barrier = barrier_frame(12);
    Decision d = h.filter.process(as_frame(barrier), k_time);
    EXPECT_EQ(d.verdict, Verdict::barrier);
    EXPECT_EQ(d.frame.words, barrier.data());
    EXPECT_EQ(h.filter.process(as_frame(barrier), k_time).verdict,
              Verdict::barrier);  // never a duplicate
    EXPECT_EQ(h.filter.stats().barriers, 2u);
}

TEST(Filter, DedupDropsAnIdSeenWithinTheWindow) {
    FilterRules rules;
    rules.dedup = "10m";
    Harness h(rules);
    IdGenerator ids(3);
    TestMessage a = reading(20, 40), b = reading(21, 40);
    a.id = ids.next(k_time);
    b.id = ids.next(k_time);
    EXPECT_EQ(h.run(a).verdict, Verdict::pass);
    EXPECT_EQ(h.run(b).verdict, Verdict::pass);
    EXPECT_EQ(h.run(a).verdict, Verdict::duplicate);
    TestMessage later = reading(22, 40);
    later.id = ids.next(k_time + 11LL * 60 * 1'000'000'000);  // moves the window past a and b
    EXPECT_EQ(h.run(later).verdict, Verdict::pass);
    EXPECT_EQ(h.run(a).verdict, Verdict::pass);
    EXPECT_EQ(h.filter.stats().duplicate, 1u);
    // Without an id there is nothing to compare: the message passes.
    TestMessage anonymous = reading(20, 40);
    anonymous.with_id = false;
    EXPECT_EQ(h.run(anonymous).verdict, Verdict::pass);
    EXPECT_EQ(h.run(anonymous).verdict, Verdict::pass);
}

TEST(Filter, DedupBeyondItsCapCountsEvictions) {
    FilterRules rules;
    rules.dedup = "1h";
    rules.dedup_max = 2;
    Harness h(rules);
    IdGenerator ids(4);
    std::vector<TestMessage> messages(3, reading(20, 40));
    for (auto& m : messages) {
        m.id = ids.next(k_time);
        h.run(m);
    }
    EXPECT_EQ(h.filter.dedup_evicted(), 1u);
    EXPECT_EQ(h.run(messages[0]).verdict, Verdict::pass);  // forgotten: counted, not silent
    EXPECT_EQ(h.run(messages[2]).verdict, Verdict::duplicate);
}

TEST(Filter, SampleKeepsTheSameMessagesEveryTimeAtAboutTheRate) {
    FilterRules rules;
    rules.sample = 0.25;
    Harness first(rules), second(rules);
    IdGenerator ids(5);
    int kept = 0;
    constexpr int k_messages = 20'000;
    for (int i = 0; i < k_messages; ++i) {
        TestMessage m = reading(20, 40);
        m.id = ids.next(k_time + i * 1'000'000LL);
        bool a = first.run(m).verdict == Verdict::pass;
        bool b = second.run(m).verdict == Verdict::pass;
        ASSERT_EQ(a, b);
        ASSERT_EQ(a, sample_keeps(m.id, 0.25));
        kept += a;
    }
    EXPECT_NEAR(kept, k_messages / 4, k_messages / 100);  // within 1 point of 25 %
    EXPECT_EQ(first.filter.stats().sampled, static_cast<uint64_t>(k_messages - kept));
}

TEST(Filter, ABadExpressionNamesItsOptionAndPointsAtTheColumn) {
    FilterRules rules;
    rules.sets = {"temperature_f=temperature * 9 / / 5"};
    Log log{"mh-filter", LogLevel::error};
    try {
        Filter filter(rules, wire::FrameLimits{}, log);
        FAIL() << "compiled";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::usage);
        std::string what = e.what();
        EXPECT_EQ(what.rfind("bad expression in --set temperature_f: ", 0), 0u) << what;
        EXPECT_NE(what.find("temperature * 9 / / 5"), std::string::npos) << what;
        EXPECT_NE(what.find('^'), std::string::npos) << what;
    }
}

TEST(Filter, BadRulesAreUsageErrors) {
    auto fails = [](FilterRules rules, std::string_view says) {
        Log log{"mh-filter", LogLevel::error};
        try {
            Filter filter(rules, wire::FrameLimits{}, log);
            ADD_FAILURE() << "accepted; expected: " << says;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ExitCode::usage);
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
        }
    };
    FilterRules r;
    r.invert = true;
    fails(r, "--invert needs an expression");
    r = {};
    r.sets = {"temperature * 2"};
    fails(r, "expected NAME=EXPR");
    r.sets = {"x==2"};
    fails(r, "expected NAME=EXPR");
    r.sets = {"time=1"};
    fails(r, "header");
    r.sets = {"x="};
    fails(r, "expression after '=' is missing");
    r = {};
    r.alerts = {"hot=temperature > 30", "hot=temperature > 40"};
    fails(r, "two rules are named 'hot'");
    r = {};
    r.alerts = {"hot=temperature >"};
    fails(r, "bad expression in --alert hot: ");
    r = {};
    r.renames = {"a=b", "c=b"};
    fails(r, "two fields are renamed to b");
    r = {};
    r.sample = 0;
    fails(r, "--sample 0");
    r = {};
    r.dedup = "soon";
    fails(r, "--dedup 'soon'");
    fails(where("temperature >> 3"), "bad expression: ");
}
