// Fuzzes the expression language with any text as an expression (a filter, a --set, a rule
// file all come from people). What fails to compile must say where, within the text; what
// compiles is evaluated against a message with typed fields, an empty one and a barrier, and
// must give the same answer every time, whether asked with evaluate() or holds(), also once
// its result is put back as a computed field (mh-filter --set). Nothing may crash, leak, read
// out of bounds or hit undefined behaviour.
#include "expr/expr.h"

#include <capnp/message.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace mh;
using namespace mh::expr;

constexpr int64_t k_now_ns = 1'767'225'600'000'000'000;  // 2026-01-01T00:00:00Z

[[noreturn]] void fail(const char* what, std::string_view expression, const std::string& detail = {}) {
    std::fprintf(stderr, "expr_parse_fuzz: %s\n  expression: %.*s\n  %s\n", what,
                 static_cast<int>(expression.size()), expression.data(), detail.c_str());
    std::abort();
}

// Typed fields of every kind, with the awkward cases a real stream has: a duplicate name
// (the first wins), a NaN, raw JSON, UTF-8 text, a dotted name.
void build_typed(schema::Message::Builder m) {
    uint8_t id[16] = {0x01, 0x9a, 0xc0, 0xd2, 0x7e, 0x3a, 0x7a, 0x2b,
                      0x8c, 0x4d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3};
    m.setId(kj::arrayPtr(id, sizeof id));
    m.setTime(k_now_ns - 7'000'000'000);
    m.setIngested(k_now_ns - 1'000'000);
    m.setSource("sensor-000042");
    m.setGateway("gw-07");
    m.setKind("telemetry");
    const char body[] = "{\"raw\":[1,2,3]}";
    m.setBody(kj::arrayPtr(reinterpret_cast<const kj::byte*>(body), sizeof body - 1));
    auto fields = m.initFields(11);
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
    fields[5].setName("tags");
    fields[5].getValue().setJson("[\"a\",null]");
    fields[6].setName("label");
    fields[6].getValue().setText("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC");
    fields[7].setName("nan");
    fields[7].getValue().setFloat(std::nan(""));
    fields[8].setName("big");
    fields[8].getValue().setInt(INT64_MIN);
    fields[9].setName("temperature");  // a duplicate: ignored
    fields[9].getValue().setText("shadowed");
    fields[10].setName("");
    fields[10].getValue().setFloat(-0.0);
}

void build_barrier(schema::Message::Builder m) {
    m.setTime(k_now_ns);
    auto barrier = m.getControl().initBarrier();
    barrier.setNumber(17);
    barrier.setTime(k_now_ns);
}

// A value with its text copied out of the scratch space, so that it outlives the next evaluation.
struct Kept {
    Value value;
    std::string text;
};

Kept keep(const Value& value) {
    Kept kept{value, std::string(value.text)};
    kept.value.text = {};
    return kept;
}

bool same(const Kept& x, const Kept& y) {
    if (x.value.type != y.value.type) return false;
    switch (x.value.type) {
        case Type::missing: return true;
        case Type::boolean: return x.value.boolean == y.value.boolean;
        case Type::integer: return x.value.integer == y.value.integer;
        case Type::floating:  // bit for bit: NaN is the same NaN
            return std::memcmp(&x.value.floating, &y.value.floating, sizeof(double)) == 0;
        case Type::text: return x.text == y.text;
    }
    return false;
}

std::string describe(const Kept& kept) {
    Value value = kept.value;
    value.text = kept.text;
    return "type " + std::to_string(static_cast<int>(value.type)) + " value " + to_string(value);
}

void check_evaluation(const Expression& expression, const Symbols& symbols, schema::Message::Reader message,
                      std::string_view input) {
    Record record(symbols);
    Scratch scratch;
    record.bind(message, k_now_ns);

    Kept first = keep(expression.evaluate(record, scratch));
    Kept second = keep(expression.evaluate(record, scratch));
    if (!same(first, second)) fail("two evaluations differ", input, describe(first) + " / " + describe(second));
    if (expression.holds(record, scratch) != first.value.is_true())
        fail("holds() differs from evaluate().is_true()", input, describe(first));
    (void)to_string(expression.evaluate(record, scratch));

    // Bound again, the record must forget the last message entirely.
    Scratch other;
    record.bind(message, k_now_ns);
    Kept rebound = keep(expression.evaluate(record, other));
    if (!same(first, rebound)) fail("a second bind changed the result", input, describe(first) + " / " + describe(rebound));

    // As mh-filter --set does: the result becomes a field the expression may read itself.
    for (uint32_t slot : expression.slots()) {
        record.set(slot, expression.evaluate(record, scratch));
        Kept computed = keep(expression.evaluate(record, scratch));
        if (expression.holds(record, scratch) != computed.value.is_true())
            fail("holds() differs from evaluate().is_true() with a computed field", input, describe(computed));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static capnp::MallocMessageBuilder typed, empty, barrier;
    static bool built = false;
    if (!built) {
        build_typed(typed.initRoot<schema::Message>());
        empty.initRoot<schema::Message>();
        build_barrier(barrier.initRoot<schema::Message>());
        built = true;
    }

    // A copy of exactly `size` bytes, so that AddressSanitizer sees any read beyond the text.
    std::vector<char> copy(data, data + size);
    std::string_view input(copy.data(), copy.size());

    Symbols symbols;
    auto compiled = Expression::compile(input, symbols);
    if (auto* error = std::get_if<CompileError>(&compiled)) {
        if (error->column > input.size())
            fail("error column beyond the text", input, std::to_string(error->column) + ": " + error->message);
        if (error->message.empty()) fail("empty error message", input);
        std::string rendered = error->render(input);
        if (rendered.compare(0, error->message.size(), error->message) != 0 || rendered.back() != '^')
            fail("render() lost the message or the caret", input, rendered);
        // The same text fails the same way again: compiling has no hidden state.
        Symbols again;
        auto recompiled = Expression::compile(input, again);
        auto* error2 = std::get_if<CompileError>(&recompiled);
        if (!error2 || error2->column != error->column || error2->message != error->message)
            fail("a second compile differs", input, error->message);
        return 0;
    }

    const Expression& expression = std::get<Expression>(compiled);
    if (expression.text() != input) fail("text() differs from the input", input, expression.text());
    std::vector<char> seen(symbols.names().size(), 0);
    for (uint32_t slot : expression.slots()) {
        if (slot >= symbols.names().size()) fail("slot beyond the symbols", input, std::to_string(slot));
        if (seen[slot]++) fail("slot listed twice", input, symbols.names()[slot]);
    }

    check_evaluation(expression, symbols, typed.getRoot<schema::Message>().asReader(), input);
    check_evaluation(expression, symbols, empty.getRoot<schema::Message>().asReader(), input);
    check_evaluation(expression, symbols, barrier.getRoot<schema::Message>().asReader(), input);

    // Moved, the expression is still the same program.
    Expression moved = std::move(std::get<Expression>(compiled));
    check_evaluation(moved, symbols, typed.getRoot<schema::Message>().asReader(), input);
    return 0;
}
