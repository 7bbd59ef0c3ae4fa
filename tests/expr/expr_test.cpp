// The expression language: every operator, precedence, the missing-field rule, functions,
// and compile errors that point at the column.
#include "expr/expr.h"
#include "expr/glob.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

using namespace mh::expr;

namespace {

// A message with a few typed fields to evaluate against:
//   source sensor-000042, gateway gw-07, kind telemetry, time 1 s after the epoch,
//   temperature 31.5, humidity 45 (int), status "Door Open", ok true, motor.rpm 1500,
//   nan NaN.
class ExprTest : public ::testing::Test {
protected:
    ExprTest() {
        auto m = m_builder.initRoot<mh::schema::Message>();
        m.setSource("sensor-000042");
        m.setGateway("gw-07");
        m.setKind("telemetry");
        m.setTime(1'000'000'000);
        uint8_t id[16] = {0x01, 0x9a, 0xc0, 0xd2, 0x7e, 0x3a, 0x7a, 0x2b,
                          0x8c, 0x4d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3};
        m.setId(kj::arrayPtr(id, 16));
        auto fields = m.initFields(6);
        fields[0].setName("temperature");
        fields[0].getValue().setFloat(31.5);
        fields[1].setName("humidity");
        fields[1].getValue().setInt(45);
        fields[2].setName("status");
        fields[2].getValue().setText("Door Open");
        fields[3].setName("ok");
        fields[3].getValue().setBool(true);
        fields[4].setName("motor.rpm");
        fields[4].getValue().setInt(1500);
        fields[5].setName("nan");
        fields[5].getValue().setFloat(std::nan(""));
    }

    ~ExprTest() noexcept override {}  // the message builder's destructor may throw; ours may not

    Value eval(std::string_view text) {
        auto compiled = Expression::compile(text, m_symbols);
        if (auto* error = std::get_if<CompileError>(&compiled)) {
            ADD_FAILURE() << "compile error for '" << text << "': " << error->render(text);
            return Value::missing();
        }
        m_expressions.push_back(std::move(std::get<Expression>(compiled)));
        m_record.bind(m_builder.getRoot<mh::schema::Message>().asReader(), k_now);
        Value value = m_expressions.back().evaluate(m_record, m_scratch);
        // The same message as a frame in mh's own layout, bound by its view (mh-filter's
        // way), must give the same value.
        auto words = capnp::messageToFlatArray(m_builder);
        mh::wire::Frame frame{words.begin(), words.size()};
        mh::wire::MessageView view;
        EXPECT_TRUE(mh::wire::read_message_view(frame, &view));
        Record by_view(m_symbols);
        Scratch scratch;
        by_view.bind(view, k_now);
        Value other = m_expressions.back().evaluate(by_view, scratch);
        EXPECT_TRUE(same(value, other)) << text << ": " << to_string(value) << " by the reader, "
                                        << to_string(other) << " by the view";
        // holds() takes a shorter way than evaluate() for logic and comparisons: the same
        // answer by the reader and by the view alone (message() unbound).
        const Expression& expression = m_expressions.back();
        EXPECT_EQ(expression.holds(m_record, m_scratch), value.is_true()) << text << " by the reader";
        EXPECT_EQ(expression.holds(by_view, scratch), value.is_true()) << text << " by the view alone";
        return value;
    }
    static bool same(const Value& a, const Value& b) {
        if (a.type != b.type) return false;
        switch (a.type) {
            case Type::missing: return true;
            case Type::boolean: return a.boolean == b.boolean;
            case Type::integer: return a.integer == b.integer;
            case Type::floating: return a.floating == b.floating || (std::isnan(a.floating) && std::isnan(b.floating));
            case Type::text: return a.text == b.text;
        }
        return false;
    }
    bool holds(std::string_view text) { return eval(text).is_true(); }

    CompileError error(std::string_view text) {
        auto compiled = Expression::compile(text, m_symbols);
        if (auto* e = std::get_if<CompileError>(&compiled)) return *e;
        ADD_FAILURE() << "'" << text << "' compiled";
        return {};
    }

    static constexpr int64_t k_now = 1'000'000'000'000;
    capnp::MallocMessageBuilder m_builder;
    Symbols m_symbols;
    Record m_record{m_symbols};
    Scratch m_scratch;
    std::vector<Expression> m_expressions;
};

}  // namespace

TEST_F(ExprTest, LiteralsAndTypes) {
    EXPECT_EQ(eval("42").integer, 42);
    EXPECT_EQ(eval("42").type, Type::integer);
    EXPECT_DOUBLE_EQ(eval("3.25").floating, 3.25);
    EXPECT_DOUBLE_EQ(eval("1e-3").floating, 0.001);
    EXPECT_EQ(eval("'single' + \"double\"").text, "singledouble");
    EXPECT_EQ(eval("\"tab\\tquote\\\" \\u00e9\"").text, "tab\tquote\" \xC3\xA9");
    EXPECT_TRUE(holds("true"));
    EXPECT_FALSE(holds("false"));
}

TEST_F(ExprTest, DurationsAreIntegerNanoseconds) {
    EXPECT_EQ(eval("5m").integer, 300'000'000'000);
    EXPECT_EQ(eval("1h30m").integer, 5'400'000'000'000);
    EXPECT_EQ(eval("250ms").integer, 250'000'000);
    EXPECT_TRUE(holds("now() - time > 5m"));
    EXPECT_EQ(eval("now()").integer, k_now);
}

TEST_F(ExprTest, FieldsHeadersAndQuotedNames) {
    EXPECT_DOUBLE_EQ(eval("temperature").floating, 31.5);
    EXPECT_EQ(eval("humidity").integer, 45);
    EXPECT_EQ(eval("status").text, "Door Open");
    EXPECT_TRUE(holds("ok"));
    EXPECT_EQ(eval("motor.rpm").integer, 1500);
    EXPECT_EQ(eval("`motor.rpm`").integer, 1500);
    EXPECT_EQ(eval("source").text, "sensor-000042");
    EXPECT_EQ(eval("gateway").text, "gw-07");
    EXPECT_EQ(eval("kind").text, "telemetry");
    EXPECT_EQ(eval("time").integer, 1'000'000'000);
    EXPECT_EQ(eval("id").text, "019ac0d2-7e3a-7a2b-8c4d-5e6f708192a3");
    EXPECT_EQ(eval("ingested").type, Type::missing);  // zero: not set
}

TEST_F(ExprTest, Arithmetic) {
    EXPECT_EQ(eval("1 + 2 * 3").integer, 7);
    EXPECT_EQ(eval("(1 + 2) * 3").integer, 9);
    EXPECT_EQ(eval("7 % 3").integer, 1);
    EXPECT_DOUBLE_EQ(eval("7 / 2").floating, 3.5);  // / always divides exactly
    EXPECT_DOUBLE_EQ(eval("temperature * 9 / 5 + 32").floating, 88.7);
    EXPECT_DOUBLE_EQ(eval("humidity + 0.5").floating, 45.5);
    EXPECT_EQ(eval("-humidity").integer, -45);
    EXPECT_EQ(eval("2 - 3 - 4").integer, -5);  // left associative
}

TEST_F(ExprTest, ArithmeticThatCannotBeDoneIsMissing) {
    EXPECT_EQ(eval("1 / 0").type, Type::missing);
    EXPECT_EQ(eval("1 % 0").type, Type::missing);
    EXPECT_EQ(eval("9223372036854775807 + 1").type, Type::missing);
    EXPECT_EQ(eval("status * 2").type, Type::missing);
    EXPECT_EQ(eval("2.5 % 2").type, Type::missing);
    EXPECT_EQ(eval("-status").type, Type::missing);
}

TEST_F(ExprTest, Comparisons) {
    EXPECT_TRUE(holds("temperature > 30"));
    EXPECT_TRUE(holds("temperature >= 31.5"));
    EXPECT_FALSE(holds("temperature < 31.5"));
    EXPECT_TRUE(holds("humidity <= 45"));
    EXPECT_TRUE(holds("humidity == 45.0"));  // int and float compare as numbers
    EXPECT_TRUE(holds("humidity != 44"));
    EXPECT_TRUE(holds("source == 'sensor-000042'"));
    EXPECT_TRUE(holds("source < 'sensor-1'"));  // text compares by bytes
    EXPECT_TRUE(holds("ok == true"));
}

TEST_F(ExprTest, ComparisonsOfNumbersByEveryOperator) {
    // holds() compares numbers without building Values; eval() checks it against evaluate().
    for (const char* op : {"==", "!=", "<", "<=", ">", ">="}) {
        for (const char* pair : {"humidity {} 45", "humidity {} 46", "humidity {} 44.5",
                                 "temperature {} 31.5", "temperature {} 31", "31.5 {} temperature",
                                 "temperature {} nan", "nan {} nan",
                                 "9223372036854775807 {} 9223372036854775806",
                                 "9007199254740993 {} 9007199254740992.0", "humidity {} '45'",
                                 "status {} 'Door Open'", "ok {} true", "pressure {} 1",
                                 "not (humidity {} 45) or temperature {} 30",
                                 "humidity + 1 {} 46 and temperature * 2 {} 63"}) {
            std::string text = pair;
            for (size_t at; (at = text.find("{}")) != std::string::npos;) text.replace(at, 2, op);
            eval(text);
        }
    }
    EXPECT_TRUE(holds("temperature != nan"));  // NaN is unequal to all, itself too
    EXPECT_FALSE(holds("nan == nan"));
    EXPECT_FALSE(holds("nan >= nan"));
}

TEST_F(ExprTest, TheMissingRule) {
    // A comparison with a missing field is false, whichever way it is asked...
    EXPECT_FALSE(holds("pressure > 1000"));
    EXPECT_FALSE(holds("pressure <= 1000"));
    EXPECT_FALSE(holds("pressure == 1000"));
    EXPECT_FALSE(holds("pressure != 1000"));
    EXPECT_FALSE(holds("pressure in [1, 2]"));
    EXPECT_FALSE(holds("pressure not in [1, 2]"));
    // ... as is one between mismatched types ...
    EXPECT_FALSE(holds("status > 3"));
    EXPECT_FALSE(holds("status != 3"));
    EXPECT_FALSE(holds("ok < true"));
    // ... while not, and, or treat missing as false.
    EXPECT_TRUE(holds("not (pressure > 1000)"));
    EXPECT_FALSE(holds("pressure and true"));
    EXPECT_TRUE(holds("pressure or true"));
    EXPECT_EQ(eval("pressure + 1").type, Type::missing);
    EXPECT_EQ(eval("abs(pressure)").type, Type::missing);
    EXPECT_FALSE(holds("exists(pressure)"));
    EXPECT_TRUE(holds("exists(temperature) and exists(source) and not exists(ingested)"));
}

TEST_F(ExprTest, LogicAndPrecedence) {
    EXPECT_TRUE(holds("temperature > 30 and humidity < 50"));
    EXPECT_TRUE(holds("false or true and true"));    // and binds tighter than or
    EXPECT_FALSE(holds("(false or true) and false"));
    EXPECT_TRUE(holds("not false and true"));        // not binds tighter than and
    EXPECT_TRUE(holds("!false && true || false"));   // symbol forms
    EXPECT_TRUE(holds("not temperature < 20"));      // not applies to the comparison
    EXPECT_TRUE(holds("1 + 2 == 3"));                // arithmetic binds tighter than ==
}

TEST_F(ExprTest, InLikeAndRegex) {
    EXPECT_TRUE(holds("kind in ['telemetry', 'event']"));
    EXPECT_TRUE(holds("humidity in [44, 45.0]"));
    EXPECT_TRUE(holds("kind not in ['alert']"));
    EXPECT_FALSE(holds("kind in []"));
    EXPECT_TRUE(holds("source like 'sensor-0000*'"));
    EXPECT_TRUE(holds("source like 'sensor-00004?'"));
    EXPECT_TRUE(holds("gateway like 'gw-0[5-9]'"));
    EXPECT_TRUE(holds("gateway not like 'gw-1*'"));
    EXPECT_TRUE(holds("gateway =~ '^gw-(0[1-7])$'"));
    EXPECT_TRUE(holds("status =~ 'Open'"));  // matches anywhere
    EXPECT_TRUE(holds("status !~ '^Open'"));
    EXPECT_TRUE(holds("source =~ '\\d{6}$'"));
    EXPECT_FALSE(holds("humidity like '4*'"));  // like and =~ need text
}

TEST_F(ExprTest, Functions) {
    EXPECT_EQ(eval("abs(-3)").integer, 3);
    EXPECT_DOUBLE_EQ(eval("abs(-2.5)").floating, 2.5);
    EXPECT_EQ(eval("min(3, 1, 2)").integer, 1);
    EXPECT_DOUBLE_EQ(eval("max(humidity, temperature)").floating, 45.0);
    EXPECT_EQ(eval("max('a', 'b')").text, "b");
    EXPECT_DOUBLE_EQ(eval("round(temperature)").floating, 32.0);
    EXPECT_DOUBLE_EQ(eval("round(2.345, 2)").floating, 2.35);
    EXPECT_DOUBLE_EQ(eval("floor(temperature)").floating, 31.0);
    EXPECT_DOUBLE_EQ(eval("ceil(temperature)").floating, 32.0);
    EXPECT_EQ(eval("floor(humidity)").integer, 45);
    EXPECT_EQ(eval("lower(status)").text, "door open");
    EXPECT_EQ(eval("upper(source)").text, "SENSOR-000042");
    EXPECT_TRUE(holds("starts_with(source, 'sensor-')"));
    EXPECT_TRUE(holds("ends_with(source, '42')"));
    EXPECT_TRUE(holds("contains(lower(status), 'open')"));
    EXPECT_EQ(eval("len(status)").integer, 9);
    EXPECT_EQ(eval("len('\\u00e9t\\u00e9')").integer, 3);  // characters, not bytes
    EXPECT_EQ(eval("len(humidity)").type, Type::missing);
    EXPECT_EQ(eval("min(1, 'a')").type, Type::missing);
}

TEST_F(ExprTest, ComputedFieldsOverrideTheMessage) {
    auto compiled = Expression::compile("temperature_f > 80 and temperature < 40", m_symbols);
    ASSERT_TRUE(std::holds_alternative<Expression>(compiled));
    auto& expression = std::get<Expression>(compiled);
    m_record.bind(m_builder.getRoot<mh::schema::Message>().asReader(), 0);
    EXPECT_FALSE(expression.holds(m_record, m_scratch));
    m_record.set(*m_symbols.find("temperature_f"), Value::of_float(88.7));
    EXPECT_TRUE(expression.holds(m_record, m_scratch));
    m_record.set(*m_symbols.find("temperature"), Value::of_text("hot"));
    EXPECT_FALSE(expression.holds(m_record, m_scratch));
    // Slots list the fields the expression reads, in order of mention.
    ASSERT_EQ(expression.slots().size(), 2u);
    EXPECT_EQ(m_symbols.names()[expression.slots()[0]], "temperature_f");
}

TEST_F(ExprTest, ErrorsPointAtTheColumn) {
    auto e = error("temperature > > 3");
    EXPECT_EQ(e.column, 14u);
    EXPECT_NE(e.message.find("expected a value"), std::string::npos) << e.message;
    EXPECT_EQ(e.render("temperature > > 3"),
              "expected a value (a number, string, field name, function or '(') but found '>' (column 15)\n"
              "  temperature > > 3\n"
              "                ^");

    EXPECT_EQ(error("temperature >").column, 13u);
    EXPECT_NE(error("temperature >").message.find("the end of the expression"), std::string::npos);
    EXPECT_EQ(error("(a > 1").column, 6u);
    EXPECT_NE(error("(a > 1").message.find("expected ')' to close the '(' at column 1"), std::string::npos);
    EXPECT_NE(error("a = 1").message.find("compare with '=='"), std::string::npos);
    EXPECT_NE(error("1 < a < 3").message.find("do not chain"), std::string::npos);
    EXPECT_NE(error("a > 1 b").message.find("after a complete expression"), std::string::npos);
    EXPECT_NE(error("frobnicate(a)").message.find("unknown function 'frobnicate'"), std::string::npos);
    EXPECT_NE(error("round(1, 2, 3)").message.find("round() takes 1 or 2 arguments, not 3"), std::string::npos);
    EXPECT_NE(error("exists(1 + 2)").message.find("exists() takes a field"), std::string::npos);
    EXPECT_NE(error("source =~ '('").message.find("bad regular expression"), std::string::npos);
    EXPECT_EQ(error("source =~ '('").column, 10u);
    EXPECT_NE(error("source like 'a[b'").message.find("unclosed '['"), std::string::npos);
    EXPECT_NE(error("source like other").message.find("quoted pattern"), std::string::npos);
    EXPECT_NE(error("'open").message.find("unterminated string"), std::string::npos);
    EXPECT_NE(error("5x > 1").message.find("bad duration"), std::string::npos);
    EXPECT_NE(error("99999999999999999999").message.find("does not fit in 64 bits"), std::string::npos);
    EXPECT_NE(error("a in 1").message.find("'[' to start the list"), std::string::npos);
    EXPECT_NE(error("a & b").message.find("use 'and'"), std::string::npos);
    EXPECT_NE(error("").message.find("empty"), std::string::npos);
    EXPECT_NE(error("@").message.find("unexpected character '@'"), std::string::npos);
    EXPECT_NE(error(std::string(200, '(') + "1" + std::string(200, ')')).message.find("nested too deeply"),
              std::string::npos);
    std::string chain = "1";
    for (int i = 0; i < 50000; ++i) chain += "+1";
    EXPECT_NE(error(chain + " > temperature").message.find("expression too long"), std::string::npos);
}

TEST_F(ExprTest, KeywordsAreNotFieldNamesButBackquotesAre) {
    EXPECT_EQ(error("in > 1").column, 0u);
    auto compiled = Expression::compile("`in` > 1", m_symbols);
    EXPECT_TRUE(std::holds_alternative<Expression>(compiled));
}

TEST(Glob, MatchesStarsQuestionMarksClassesAndEscapes) {
    EXPECT_TRUE(glob_match("*", ""));
    EXPECT_TRUE(glob_match("a*c", "abbbc"));
    EXPECT_FALSE(glob_match("a*c", "abbbd"));
    EXPECT_TRUE(glob_match("a?c", "abc"));
    EXPECT_TRUE(glob_match("[a-c]x", "bx"));
    EXPECT_TRUE(glob_match("[!a-c]x", "dx"));
    EXPECT_FALSE(glob_match("[!a-c]x", "ax"));
    EXPECT_TRUE(glob_match("a\\*", "a*"));
    EXPECT_FALSE(glob_match("a\\*", "ab"));
    EXPECT_TRUE(glob_match("*-*-*", "sensor-00-1"));
    // Worst cases stay fast: no exponential backtracking.
    EXPECT_FALSE(glob_match("a*a*a*a*a*a*a*a*b", std::string(10000, 'a')));
}

TEST(Evaluation, ScratchDoesNotGrowWithLongTextResults) {
    Symbols symbols;
    auto compiled = Expression::compile("len(upper(status) + lower(status)) > 0", symbols);
    ASSERT_TRUE(std::holds_alternative<Expression>(compiled));
    auto& e = std::get<Expression>(compiled);
    capnp::MallocMessageBuilder builder;
    auto fields = builder.initRoot<mh::schema::Message>().initFields(1);
    fields[0].setName("status");
    fields[0].getValue().setText(std::string(3000, 'x'));
    Record record(symbols);
    Scratch scratch;
    record.bind(builder.getRoot<mh::schema::Message>().asReader(), 0);
    const char* first = nullptr;
    for (int i = 0; i < 100; ++i) {
        auto value = e.evaluate(record, scratch);
        EXPECT_TRUE(value.is_true());
        // The upper() result lands at the same place every time: no new blocks.
        const char* now = scratch.store("probe").data();
        if (!first) first = now;
        EXPECT_EQ(now, first);
    }
}

TEST(Evaluation, AllocatesNothingOnceWarm) {
    // Evaluated many times, text results reuse the same scratch space.
    Symbols symbols;
    auto compiled = Expression::compile("upper(source) + '-' + lower(kind)", symbols);
    ASSERT_TRUE(std::holds_alternative<Expression>(compiled));
    auto& e = std::get<Expression>(compiled);
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<mh::schema::Message>();
    m.setSource("abc");
    m.setKind("XYZ");
    Record record(symbols);
    Scratch scratch;
    record.bind(m.asReader(), 0);
    const char* first = e.evaluate(record, scratch).text.data();
    for (int i = 0; i < 1000; ++i) {
        auto v = e.evaluate(record, scratch);
        EXPECT_EQ(v.text, "ABC-xyz");
        EXPECT_EQ(v.text.data(), first);
    }
}

TEST(Evaluation, TheFirstOfTwoFieldsOfOneNameWinsByTheView) {
    // Binding by a view stops looking once every name is found: a later field of the same
    // name must not replace the first, and a name met after the others is still found.
    capnp::MallocMessageBuilder builder;
    auto fields = builder.initRoot<mh::schema::Message>().initFields(5);
    const char* names[] = {"a", "other", "b", "a", "c"};
    for (unsigned i = 0; i < 5; ++i) {
        fields[i].setName(names[i]);
        fields[i].getValue().setInt(i);
    }
    auto words = capnp::messageToFlatArray(builder);
    mh::wire::MessageView view;
    ASSERT_TRUE(mh::wire::read_message_view({words.begin(), words.size()}, &view));
    Symbols symbols;
    std::vector<Expression> expressions;
    for (const char* text : {"a == 0 and b == 2", "a == 0 and b == 2 and c == 4", "c == 4", "a == 3"}) {
        auto compiled = Expression::compile(text, symbols);
        ASSERT_TRUE(std::holds_alternative<Expression>(compiled)) << text;
        expressions.push_back(std::move(std::get<Expression>(compiled)));
    }
    Record record(symbols);
    Scratch scratch;
    record.bind(view, 0);
    EXPECT_TRUE(expressions[0].holds(record, scratch));
    EXPECT_TRUE(expressions[1].holds(record, scratch));
    EXPECT_TRUE(expressions[2].holds(record, scratch));
    EXPECT_FALSE(expressions[3].holds(record, scratch));
    EXPECT_EQ(record.field_index(*symbols.find("a")), 0);
    EXPECT_EQ(record.field_index(*symbols.find("c")), 4);
}
