// The expression language shared by mh-filter, mh-store queries, mh-route edge
// conditions and mh-notify rules. Parsed and compiled once; evaluated per message
// without allocating.
//
//   temperature > 30 and humidity < 50
//   source like "sensor-00*" and kind in ["telemetry", "event"]
//   gateway =~ "^gw-(0[1-4])$" or not exists(battery)
//   round((temperature * 9 / 5) + 32, 1)          now() - time > 5m
//
// The rule for what is missing or mismatched: a missing field, or an operation on a value
// of the wrong type, gives `missing`; any comparison with `missing` is false (so are `!=`
// and `in`), arithmetic and functions of `missing` give `missing` (exists() excepted), and
// `and`/`or`/`not` treat it as false. A message passes a filter only when the result is true.
#pragma once

#include "schema/message.capnp.h"
#include "wire/message_view.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mh::expr {

enum class Type : uint8_t { missing, boolean, integer, floating, text };

// A value during evaluation. Text points into the message, the expression's constants or
// the evaluation's scratch space: valid until the next evaluation with that scratch.
struct Value {
    Type type = Type::missing;
    bool boolean = false;
    int64_t integer = 0;
    double floating = 0;
    std::string_view text;

    static Value missing() { return {}; }
    static Value of_bool(bool b) { return {Type::boolean, b, 0, 0, {}}; }
    static Value of_int(int64_t i) { return {Type::integer, false, i, 0, {}}; }
    static Value of_float(double f) { return {Type::floating, false, 0, f, {}}; }
    static Value of_text(std::string_view t) { return {Type::text, false, 0, 0, t}; }

    bool is_true() const { return type == Type::boolean && boolean; }
    bool is_number() const { return type == Type::integer || type == Type::floating; }
    double as_double() const { return type == Type::integer ? static_cast<double>(integer) : floating; }
};

// Field names used by a set of expressions, each given a small number (a slot) so that a
// message's fields are looked up once per message, not once per reference.
class Symbols {
public:
    uint32_t intern(std::string_view name);
    const std::vector<std::string>& names() const { return m_names; }
    std::optional<uint32_t> find(std::string_view name) const;

private:
    std::vector<std::string> m_names;
};

// One message as expressions see it: the header, its fields found by slot, and values that
// earlier steps (mh-filter's --set) put in place of fields. Reused from message to message.
class Record {
public:
    explicit Record(const Symbols& symbols);

    // Binds the record to a message: one pass over its fields. `now_ns` is what now()
    // returns for this message (a controlled clock in tests and replays).
    void bind(schema::Message::Reader message, int64_t now_ns);
    // The same for a frame read_message_view() took: the fields and the header are read
    // from `view` (plain values, no Cap'n Proto reader per access), which must stay valid
    // while the record is used; message() is then an empty message.
    void bind(const wire::MessageView& view, int64_t now_ns);

    schema::Message::Reader message() const { return m_message; }
    const wire::MessageView* message_view() const { return m_view; }  // when bound to a view
    int64_t now_ns() const { return m_now_ns; }
    // Inline: read once or more per message by every expression that names a field.
    Value field(uint32_t slot) const {
        const Slot& state = m_slots[slot];
        if (state.set == m_generation) return m_override[slot];
        if (state.found != m_generation) return Value::missing();
        if (!m_view) return field_of_message(state.index);
        const wire::FieldView& field = m_view->fields[static_cast<size_t>(state.index)];
        switch (field.which) {
            case schema::Field::Value::FLOAT: return Value::of_float(field.float_value);
            case schema::Field::Value::INT: return Value::of_int(field.int_value);
            case schema::Field::Value::TEXT:
            case schema::Field::Value::JSON: return Value::of_text(field.text);
            case schema::Field::Value::BOOL: return Value::of_bool(field.bool_value);
        }
        return Value::missing();
    }
    // Index into message().getFields() of the field in `slot`, or -1.
    int32_t field_index(uint32_t slot) const {
        return m_slots[slot].found == m_generation ? m_slots[slot].index : -1;
    }

    // Makes `slot` read `value` for the rest of this message (a computed field). Text is
    // copied into the record's own storage.
    void set(uint32_t slot, const Value& value);
    bool is_set(uint32_t slot) const { return m_slots[slot].set == m_generation; }

private:
    void start_binding();
    void size_slots();
    Value field_of_message(int32_t index) const;  // field() when bound to a reader

    // Per slot, what this message has: a slot's field index and override count only when
    // stamped with the current generation, so that a new message clears nothing.
    struct Slot {
        uint32_t found = 0;  // generation in which `index` was found
        int32_t index = -1;
        uint32_t set = 0;  // generation in which set() gave the slot a value
    };
    // A symbol's name as words, for matching names in a frame without a call to memcmp.
    struct Name {
        size_t size;
        uint64_t head;  // the first 8 bytes (zero past the end)
        uint64_t tail;  // the last 8 bytes, when 8 < size <= 16
    };

    const Symbols& m_symbols;
    schema::Message::Reader m_message;
    const wire::MessageView* m_view = nullptr;
    int64_t m_now_ns = 0;
    uint32_t m_generation = 0;
    std::vector<Slot> m_slots;
    std::vector<Name> m_names;
    std::vector<Value> m_override;
    std::vector<std::string> m_override_text;
};

// Room for text that evaluation makes (lower(), upper(), "a" + "b", the id as text).
// Reset at the start of each evaluation; grows to its high-water mark, then stops allocating.
class Scratch {
public:
    void reset() {
        m_block = 0;
        m_used = 0;
    }
    std::string_view store(std::string_view text);
    char* reserve(size_t bytes);  // then commit(n) for what was written
    std::string_view commit(size_t bytes);

private:
    std::vector<std::unique_ptr<char[]>> m_blocks;
    std::vector<size_t> m_sizes;
    size_t m_block = 0;
    size_t m_used = 0;
    char* m_reserved = nullptr;
};

struct CompileError {
    size_t column;          // 0-based byte offset into the expression
    std::string message;    // what was expected, or what is wrong
    // Three lines: the message with its column, the expression, and a caret under the column.
    std::string render(std::string_view expression) const;
};

class Program;  // the compiled form, private to expr.cpp

class Expression {
public:
    // Parses and compiles `text`; field names are interned into `symbols`.
    static std::variant<Expression, CompileError> compile(std::string_view text, Symbols& symbols);

    Expression(Expression&&) noexcept;
    Expression& operator=(Expression&&) noexcept;
    ~Expression();

    Value evaluate(const Record& record, Scratch& scratch) const;
    // evaluate(...).is_true(), without building the Values of `and`, `or`, `not` and of
    // comparisons between numbers (what most filters are made of).
    bool holds(const Record& record, Scratch& scratch) const;

    const std::string& text() const;
    // The field slots the expression reads, in order of first mention (for alerts that
    // report "the values involved").
    const std::vector<uint32_t>& slots() const;

private:
    explicit Expression(std::unique_ptr<Program> program);
    std::unique_ptr<Program> m_program;
};

// Formats a value for people and for alert messages: numbers as JSON writes them, text as is.
std::string to_string(const Value& value);

}  // namespace mh::expr
