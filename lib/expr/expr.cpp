// Parser (recursive descent, one function per precedence level), compiled program (a
// flat array of nodes) and evaluator (a switch per node) of the expression language.
#include "expr/expr.h"

#include "expr/glob.h"
#include "expr/lexer.h"
#include "message/id.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace mh::expr {

// ---- symbols, records, scratch ----------------------------------------------------------

uint32_t Symbols::intern(std::string_view name) {
    if (auto slot = find(name)) return *slot;
    m_names.emplace_back(name);
    return static_cast<uint32_t>(m_names.size() - 1);
}

std::optional<uint32_t> Symbols::find(std::string_view name) const {
    for (size_t i = 0; i < m_names.size(); ++i)
        if (m_names[i].size() == name.size() && std::memcmp(m_names[i].data(), name.data(), name.size()) == 0)
            return static_cast<uint32_t>(i);
    return std::nullopt;
}

Record::Record(const Symbols& symbols) : m_symbols(symbols) {}

namespace {
std::string_view view(capnp::Text::Reader text) { return {text.begin(), text.size()}; }
}  // namespace

void Record::start_binding() {
    if (m_slots.size() != m_symbols.names().size()) [[unlikely]]
        size_slots();
    if (++m_generation == 0) [[unlikely]] {  // wrapped: stamps of 4 billion messages ago look current
        std::fill(m_slots.begin(), m_slots.end(), Slot{});
        m_generation = 1;
    }
}

// Symbols added after construction: sized once.
void Record::size_slots() {
    const auto& names = m_symbols.names();
    size_t slots = names.size();
    m_slots.assign(slots, Slot{});
    m_override.resize(slots);
    m_override_text.resize(slots);
    m_names.clear();
    for (const auto& name : names) {
        Name words{name.size(), 0, 0};
        std::memcpy(&words.head, name.data(), std::min<size_t>(name.size(), 8));
        if (name.size() > 8 && name.size() <= 16) std::memcpy(&words.tail, name.data() + name.size() - 8, 8);
        m_names.push_back(words);
    }
    m_generation = 0;
}

void Record::bind(schema::Message::Reader message, int64_t now_ns) {
    m_message = message;
    m_view = nullptr;
    m_now_ns = now_ns;
    start_binding();
    if (m_slots.empty()) return;
    auto fields = message.getFields();
    for (uint32_t i = 0; i < fields.size(); ++i) {
        if (auto slot = m_symbols.find(view(fields[i].getName()))) {
            Slot& state = m_slots[*slot];
            if (state.found != m_generation) {  // the first wins
                state.found = m_generation;
                state.index = static_cast<int32_t>(i);
            }
        }
    }
}

void Record::bind(const wire::MessageView& view, int64_t now_ns) {
    m_message = {};
    m_view = &view;
    m_now_ns = now_ns;
    start_binding();
    size_t slots = m_slots.size();
    if (slots == 0) return;
    const auto& fields = view.fields;
    const Name* names = m_names.data();
    Slot* states = m_slots.data();
    const uint32_t generation = m_generation;
    // Once every slot is found the rest of the fields can change nothing (the first wins).
    size_t unfound = slots;
    for (size_t i = 0; i < fields.size() && unfound > 0; ++i) {
        std::string_view name = fields[i].name;
        size_t size = name.size();
        // A name in a frame lies in whole words: the 8 bytes at its start are readable, and
        // for a name of 8 bytes or more so are the 8 before its end. (An empty one may be a
        // view of a constant "": not read.)
        uint64_t head = 0;
        if (size > 0) std::memcpy(&head, name.data(), 8);
        if (size < 8) head &= (uint64_t{1} << (8 * size)) - 1;
        for (size_t slot = 0; slot < slots; ++slot) {
            const Name& symbol = names[slot];
            if (symbol.size != size || symbol.head != head) continue;
            if (size > 16) {
                if (std::memcmp(name.data() + 8, m_symbols.names()[slot].data() + 8, size - 8) != 0)
                    continue;
            } else if (size > 8) {
                uint64_t tail;
                std::memcpy(&tail, name.data() + size - 8, 8);
                if (tail != symbol.tail) continue;
            }
            Slot& state = states[slot];
            if (state.found != generation) {  // the first wins
                state.found = generation;
                state.index = static_cast<int32_t>(i);
                --unfound;
            }
            break;
        }
    }
}

Value Record::field_of_message(int32_t index) const {
    auto value = m_message.getFields()[static_cast<uint32_t>(index)].getValue();
    switch (value.which()) {
        case schema::Field::Value::FLOAT: return Value::of_float(value.getFloat());
        case schema::Field::Value::INT: return Value::of_int(value.getInt());
        case schema::Field::Value::TEXT: return Value::of_text(view(value.getText()));
        case schema::Field::Value::BOOL: return Value::of_bool(value.getBool());
        case schema::Field::Value::JSON: return Value::of_text(view(value.getJson()));
    }
    return Value::missing();
}

void Record::set(uint32_t slot, const Value& value) {
    Value stored = value;
    if (value.type == Type::text) {
        m_override_text[slot].assign(value.text.data(), value.text.size());
        stored.text = m_override_text[slot];
    }
    m_override[slot] = stored;
    m_slots[slot].set = m_generation;
}

char* Scratch::reserve(size_t bytes) {
    constexpr size_t k_block_bytes = 4096;
    while (m_block < m_blocks.size() && m_used + bytes > m_sizes[m_block]) {
        ++m_block;
        m_used = 0;
    }
    if (m_block == m_blocks.size()) {
        size_t size = std::max(k_block_bytes, bytes);
        m_blocks.emplace_back(new char[size]);
        m_sizes.push_back(size);
        m_used = 0;
    }
    m_reserved = m_blocks[m_block].get() + m_used;
    return m_reserved;
}

std::string_view Scratch::commit(size_t bytes) {
    m_used += bytes;
    return {m_reserved, bytes};
}

std::string_view Scratch::store(std::string_view text) {
    char* p = reserve(text.size());
    std::memcpy(p, text.data(), text.size());
    return commit(text.size());
}

std::string CompileError::render(std::string_view expression) const {
    return fmt::format("{} (column {})\n  {}\n  {}^", message, column + 1, expression,
                       std::string(std::min(column, expression.size()), ' '));
}

std::string to_string(const Value& value) {
    switch (value.type) {
        case Type::missing: return "missing";
        case Type::boolean: return value.boolean ? "true" : "false";
        case Type::integer: return std::to_string(value.integer);
        case Type::floating: return fmt::format("{}", value.floating);
        case Type::text: return std::string(value.text);
    }
    return {};
}

// ---- the compiled program ------------------------------------------------------------------

enum class Op : uint8_t {
    constant, field,
    id, time, ingested, source, gateway, kind, body,
    neg, logical_not, logical_and, logical_or,
    eq, ne, lt, le, gt, ge,
    add, sub, mul, div, mod,
    in, not_in, like, not_like, regex, not_regex,
    fn_abs, fn_min, fn_max, fn_round, fn_floor, fn_ceil, fn_lower, fn_upper,
    fn_starts_with, fn_ends_with, fn_contains, fn_len, fn_now, fn_exists,
};

struct Node {
    Op op;
    uint32_t a = 0, b = 0;          // children (unary and binary operators)
    uint32_t first = 0, count = 0;  // arguments in Program::args (functions, in-lists)
    uint32_t slot = 0;              // fields; index of a regex or pattern
    Value constant;
};

class Program {
public:
    std::string text;
    std::vector<Node> nodes;
    std::vector<uint32_t> args;
    std::vector<std::unique_ptr<std::string>> strings;  // constant text, stable addresses
    std::vector<std::unique_ptr<re2::RE2>> regexes;
    std::vector<std::string> globs;
    std::vector<uint32_t> slots;
    uint32_t root = 0;

    Value eval(uint32_t index, const Record& record, Scratch& scratch) const;
    // eval(index, ...).is_true(), the same result by a shorter way for the common nodes.
    bool truth(uint32_t index, const Record& record, Scratch& scratch) const;

private:
    Value compare(Op op, const Value& x, const Value& y) const;
    Value arithmetic(Op op, const Value& x, const Value& y, Scratch& scratch) const;
    Value header(Op op, const Record& record, Scratch& scratch) const;
    Value call(const Node& node, const Record& record, Scratch& scratch) const;
};

namespace {

bool equal(const Value& x, const Value& y) {
    if (x.is_number() && y.is_number()) {
        if (x.type == Type::integer && y.type == Type::integer) return x.integer == y.integer;
        return x.as_double() == y.as_double();
    }
    if (x.type != y.type || x.type == Type::missing) return false;
    if (x.type == Type::text) return x.text == y.text;
    return x.boolean == y.boolean;
}

// -1, 0, 1, or 2 when the two cannot be ordered (missing, mismatched, NaN).
int order(const Value& x, const Value& y) {
    if (x.is_number() && y.is_number()) {
        if (x.type == Type::integer && y.type == Type::integer)
            return x.integer < y.integer ? -1 : x.integer > y.integer ? 1 : 0;
        double a = x.as_double(), b = y.as_double();
        if (a < b) return -1;
        if (a > b) return 1;
        return a == b ? 0 : 2;
    }
    if (x.type == Type::text && y.type == Type::text) {
        int c = x.text.compare(y.text);
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    return 2;
}

int64_t utf8_length(std::string_view text) {
    int64_t n = 0;
    for (unsigned char c : text)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

}  // namespace

Value Program::compare(Op op, const Value& x, const Value& y) const {
    if (x.type == Type::missing || y.type == Type::missing) return Value::of_bool(false);
    switch (op) {
        case Op::eq: return Value::of_bool(equal(x, y));
        case Op::ne: {
            // Mismatched types are not comparable: false, like any other comparison.
            bool comparable = (x.is_number() && y.is_number()) || x.type == y.type;
            return Value::of_bool(comparable && !equal(x, y));
        }
        default: break;
    }
    int c = order(x, y);
    if (c == 2) return Value::of_bool(false);
    switch (op) {
        case Op::lt: return Value::of_bool(c < 0);
        case Op::le: return Value::of_bool(c <= 0);
        case Op::gt: return Value::of_bool(c > 0);
        case Op::ge: return Value::of_bool(c >= 0);
        default: return Value::of_bool(false);
    }
}

Value Program::arithmetic(Op op, const Value& x, const Value& y, Scratch& scratch) const {
    if (op == Op::add && x.type == Type::text && y.type == Type::text) {
        char* p = scratch.reserve(x.text.size() + y.text.size());
        std::memcpy(p, x.text.data(), x.text.size());
        std::memcpy(p + x.text.size(), y.text.data(), y.text.size());
        return Value::of_text(scratch.commit(x.text.size() + y.text.size()));
    }
    if (!x.is_number() || !y.is_number()) return Value::missing();
    if (x.type == Type::integer && y.type == Type::integer && op != Op::div) {
        int64_t r;
        bool overflow = false;
        switch (op) {
            case Op::add: overflow = __builtin_add_overflow(x.integer, y.integer, &r); break;
            case Op::sub: overflow = __builtin_sub_overflow(x.integer, y.integer, &r); break;
            case Op::mul: overflow = __builtin_mul_overflow(x.integer, y.integer, &r); break;
            case Op::mod:
                if (y.integer == 0 || (y.integer == -1 && x.integer == std::numeric_limits<int64_t>::min()))
                    return Value::missing();
                r = x.integer % y.integer;
                break;
            default: return Value::missing();
        }
        return overflow ? Value::missing() : Value::of_int(r);
    }
    double a = x.as_double(), b = y.as_double();
    switch (op) {
        case Op::add: return Value::of_float(a + b);
        case Op::sub: return Value::of_float(a - b);
        case Op::mul: return Value::of_float(a * b);
        case Op::div: return b == 0 ? Value::missing() : Value::of_float(a / b);
        case Op::mod: return Value::missing();  // % is for integers
        default: return Value::missing();
    }
}

Value Program::header(Op op, const Record& record, Scratch& scratch) const {
    if (const wire::MessageView* view = record.message_view()) {
        auto text_or_missing = [](std::string_view t) {
            return t.size() ? Value::of_text(t) : Value::missing();
        };
        switch (op) {
            case Op::time: return view->time ? Value::of_int(view->time) : Value::missing();
            case Op::ingested:
                return view->ingested ? Value::of_int(view->ingested) : Value::missing();
            case Op::source: return text_or_missing(view->source);
            case Op::gateway: return text_or_missing(view->gateway);
            case Op::kind: return text_or_missing(view->kind);
            case Op::body: return text_or_missing(view->body);
            case Op::id: {
                if (view->id.empty()) return Value::missing();
                char* p = scratch.reserve(view->id.size() * 2 + 4);
                char* end = format_id({reinterpret_cast<const uint8_t*>(view->id.data()), view->id.size()}, p);
                return Value::of_text(scratch.commit(static_cast<size_t>(end - p)));
            }
            default: return Value::missing();
        }
    }
    auto message = record.message();
    auto text_or_missing = [](capnp::Text::Reader t) {
        return t.size() ? Value::of_text(view(t)) : Value::missing();
    };
    switch (op) {
        case Op::time: return message.getTime() ? Value::of_int(message.getTime()) : Value::missing();
        case Op::ingested:
            return message.getIngested() ? Value::of_int(message.getIngested()) : Value::missing();
        case Op::source: return text_or_missing(message.getSource());
        case Op::gateway: return text_or_missing(message.getGateway());
        case Op::kind: return text_or_missing(message.getKind());
        case Op::body: {
            auto body = message.getBody();
            if (body.size() == 0) return Value::missing();
            return Value::of_text({reinterpret_cast<const char*>(body.begin()), body.size()});
        }
        case Op::id: {
            auto id = message.getId();
            if (id.size() == 0) return Value::missing();
            char* p = scratch.reserve(id.size() * 2 + 4);
            char* end = format_id({id.begin(), id.size()}, p);
            return Value::of_text(scratch.commit(static_cast<size_t>(end - p)));
        }
        default: return Value::missing();
    }
}

Value Program::call(const Node& node, const Record& record, Scratch& scratch) const {
    auto arg = [&](uint32_t i) { return eval(args[node.first + i], record, scratch); };
    switch (node.op) {
        case Op::fn_now: return Value::of_int(record.now_ns());
        case Op::fn_exists: {
            const Node& target = nodes[args[node.first]];
            if (target.op == Op::field)
                return Value::of_bool(record.is_set(target.slot) ? record.field(target.slot).type != Type::missing
                                                                 : record.field_index(target.slot) >= 0);
            return Value::of_bool(header(target.op, record, scratch).type != Type::missing);
        }
        case Op::fn_min:
        case Op::fn_max: {
            Value best = arg(0);
            if (best.type != Type::text && !best.is_number()) return Value::missing();
            for (uint32_t i = 1; i < node.count; ++i) {
                Value v = arg(i);
                int c = order(v, best);
                if (c == 2) return Value::missing();
                if ((node.op == Op::fn_min && c < 0) || (node.op == Op::fn_max && c > 0)) best = v;
                // Mixed int and float: the result is a float, whichever won.
                if (v.type == Type::floating && best.type == Type::integer) best = Value::of_float(best.as_double());
            }
            return best;
        }
        case Op::fn_round: {
            Value x = arg(0);
            if (node.count == 2) {
                Value digits = arg(1);
                if (!x.is_number() || digits.type != Type::integer || digits.integer < -15 || digits.integer > 15)
                    return Value::missing();
                double scale = std::pow(10.0, static_cast<double>(digits.integer));
                return Value::of_float(std::round(x.as_double() * scale) / scale);
            }
            if (x.type == Type::integer) return x;
            return x.type == Type::floating ? Value::of_float(std::round(x.floating)) : Value::missing();
        }
        default: break;
    }
    Value x = arg(0);
    switch (node.op) {
        case Op::fn_abs:
            if (x.type == Type::integer)
                return x.integer == std::numeric_limits<int64_t>::min() ? Value::missing()
                                                                         : Value::of_int(std::abs(x.integer));
            return x.type == Type::floating ? Value::of_float(std::fabs(x.floating)) : Value::missing();
        case Op::fn_floor:
        case Op::fn_ceil:
            if (x.type == Type::integer) return x;
            if (x.type != Type::floating) return Value::missing();
            return Value::of_float(node.op == Op::fn_floor ? std::floor(x.floating) : std::ceil(x.floating));
        case Op::fn_lower:
        case Op::fn_upper: {
            if (x.type != Type::text) return Value::missing();
            char* p = scratch.reserve(x.text.size());
            bool lower = node.op == Op::fn_lower;
            for (size_t i = 0; i < x.text.size(); ++i) {
                char c = x.text[i];  // ASCII only: UTF-8 sequences pass unchanged
                if (lower && c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
                if (!lower && c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
                p[i] = c;
            }
            return Value::of_text(scratch.commit(x.text.size()));
        }
        case Op::fn_len:
            return x.type == Type::text ? Value::of_int(utf8_length(x.text)) : Value::missing();
        case Op::fn_starts_with:
        case Op::fn_ends_with:
        case Op::fn_contains: {
            Value y = arg(1);
            if (x.type != Type::text || y.type != Type::text) return Value::missing();
            if (node.op == Op::fn_starts_with) return Value::of_bool(x.text.starts_with(y.text));
            if (node.op == Op::fn_ends_with) return Value::of_bool(x.text.ends_with(y.text));
            return Value::of_bool(x.text.find(y.text) != std::string_view::npos);
        }
        default: return Value::missing();
    }
}

namespace {
// A comparison of two numbers of one type, as order() and equal() decide it (NaN is
// unordered: only != holds for it).
template <typename Number>
bool ordered(Op op, Number a, Number b) {
    switch (op) {
        case Op::eq: return a == b;
        case Op::ne: return a != b;
        case Op::lt: return a < b;
        case Op::le: return a <= b;
        case Op::gt: return a > b;
        default: return a >= b;
    }
}
}  // namespace

bool Program::truth(uint32_t index, const Record& record, Scratch& scratch) const {
    const Node& node = nodes[index];
    switch (node.op) {
        case Op::logical_and:
            return truth(node.a, record, scratch) && truth(node.b, record, scratch);
        case Op::logical_or:
            return truth(node.a, record, scratch) || truth(node.b, record, scratch);
        case Op::logical_not: return !truth(node.a, record, scratch);
        case Op::eq:
        case Op::ne:
        case Op::lt:
        case Op::le:
        case Op::gt:
        case Op::ge: {
            const Node& left = nodes[node.a];
            const Node& right = nodes[node.b];
            if (left.op == Op::field && right.op == Op::constant && right.constant.is_number()) {
                // The commonest of all, a float field against a number: compared as
                // doubles, what order() and equal() do for a float and any number.
                Value x = record.field(left.slot);
                if (x.type == Type::floating) return ordered(node.op, x.floating, right.constant.as_double());
            }
            // Fields and constants are read in place rather than through eval().
            auto operand = [&](uint32_t i) {
                const Node& n = nodes[i];
                if (n.op == Op::field) return record.field(n.slot);
                if (n.op == Op::constant) return n.constant;
                return eval(i, record, scratch);
            };
            Value x = operand(node.a);
            Value y = operand(node.b);
            if (!x.is_number() || !y.is_number()) return compare(node.op, x, y).is_true();
            // Two numbers: plain comparisons.
            if (x.type == Type::integer && y.type == Type::integer) return ordered(node.op, x.integer, y.integer);
            return ordered(node.op, x.as_double(), y.as_double());
        }
        default: return eval(index, record, scratch).is_true();
    }
}

Value Program::eval(uint32_t index, const Record& record, Scratch& scratch) const {
    const Node& node = nodes[index];
    switch (node.op) {
        case Op::constant: return node.constant;
        case Op::field: return record.field(node.slot);
        case Op::id:
        case Op::time:
        case Op::ingested:
        case Op::source:
        case Op::gateway:
        case Op::kind:
        case Op::body: return header(node.op, record, scratch);
        case Op::neg: {
            Value x = eval(node.a, record, scratch);
            if (x.type == Type::integer)
                return x.integer == std::numeric_limits<int64_t>::min() ? Value::missing() : Value::of_int(-x.integer);
            return x.type == Type::floating ? Value::of_float(-x.floating) : Value::missing();
        }
        case Op::logical_not: return Value::of_bool(!eval(node.a, record, scratch).is_true());
        case Op::logical_and:
            return Value::of_bool(eval(node.a, record, scratch).is_true() && eval(node.b, record, scratch).is_true());
        case Op::logical_or:
            return Value::of_bool(eval(node.a, record, scratch).is_true() || eval(node.b, record, scratch).is_true());
        case Op::eq:
        case Op::ne:
        case Op::lt:
        case Op::le:
        case Op::gt:
        case Op::ge: return compare(node.op, eval(node.a, record, scratch), eval(node.b, record, scratch));
        case Op::add:
        case Op::sub:
        case Op::mul:
        case Op::div:
        case Op::mod:
            return arithmetic(node.op, eval(node.a, record, scratch), eval(node.b, record, scratch), scratch);
        case Op::in:
        case Op::not_in: {
            Value x = eval(node.a, record, scratch);
            if (x.type == Type::missing) return Value::of_bool(false);
            bool found = false;
            for (uint32_t i = 0; i < node.count && !found; ++i)
                found = equal(x, eval(args[node.first + i], record, scratch));
            return Value::of_bool(node.op == Op::in ? found : !found);
        }
        case Op::like:
        case Op::not_like: {
            Value x = eval(node.a, record, scratch);
            if (x.type != Type::text) return Value::of_bool(false);
            bool match = glob_match(globs[node.slot], x.text);
            return Value::of_bool(node.op == Op::like ? match : !match);
        }
        case Op::regex:
        case Op::not_regex: {
            Value x = eval(node.a, record, scratch);
            if (x.type != Type::text) return Value::of_bool(false);
            bool match = re2::RE2::PartialMatch(re2::StringPiece(x.text.data(), x.text.size()), *regexes[node.slot]);
            return Value::of_bool(node.op == Op::regex ? match : !match);
        }
        default: return call(node, record, scratch);
    }
}

// ---- the parser ----------------------------------------------------------------------------

namespace {

struct FunctionInfo {
    std::string_view name;
    Op op;
    uint32_t min_args, max_args;
};

constexpr FunctionInfo k_functions[] = {
    {"abs", Op::fn_abs, 1, 1},           {"min", Op::fn_min, 1, 64},
    {"max", Op::fn_max, 1, 64},          {"round", Op::fn_round, 1, 2},
    {"floor", Op::fn_floor, 1, 1},       {"ceil", Op::fn_ceil, 1, 1},
    {"lower", Op::fn_lower, 1, 1},       {"upper", Op::fn_upper, 1, 1},
    {"starts_with", Op::fn_starts_with, 2, 2}, {"ends_with", Op::fn_ends_with, 2, 2},
    {"contains", Op::fn_contains, 2, 2}, {"len", Op::fn_len, 1, 1},
    {"now", Op::fn_now, 0, 0},           {"exists", Op::fn_exists, 1, 1},
};

struct HeaderInfo {
    std::string_view name;
    Op op;
};

constexpr HeaderInfo k_headers[] = {
    {"id", Op::id},         {"time", Op::time},       {"ingested", Op::ingested}, {"source", Op::source},
    {"gateway", Op::gateway}, {"kind", Op::kind},     {"body", Op::body},
};

constexpr size_t k_max_depth = 64;          // nesting of brackets and prefixes while parsing
constexpr uint32_t k_max_tree_depth = 256;  // depth of the compiled tree, which evaluation recurses

struct ParseFailure {
    CompileError error;
};

class Parser {
public:
    Parser(std::vector<Lexeme>& lexemes, Program& program, Symbols& symbols)
        : m_lexemes(lexemes), m_program(program), m_symbols(symbols) {}

    uint32_t parse() {
        uint32_t root = parse_or();
        if (peek().token != Token::end)
            fail(peek().column, fmt::format("unexpected {} after a complete expression (missing 'and' or 'or'?)",
                                            describe(peek())));
        return root;
    }

private:
    const Lexeme& peek() const { return m_lexemes[m_pos]; }
    const Lexeme& take() { return m_lexemes[m_pos++]; }
    bool accept(Token token) {
        if (peek().token != token) return false;
        ++m_pos;
        return true;
    }
    [[noreturn]] void fail(size_t column, std::string message) { throw ParseFailure{{column, std::move(message)}}; }
    void expect(Token token, std::string_view what) {
        if (!accept(token)) fail(peek().column, fmt::format("expected {} but found {}", what, describe(peek())));
    }

    // Every node records how deep its subtree is: evaluation recurses that deep, so a
    // long chain such as 1+1+...+1 is refused here rather than overflowing the stack.
    uint32_t add(Node node) {
        uint32_t depth = 1;
        auto deeper = [&](uint32_t child) { depth = std::max(depth, m_tree_depth[child] + 1); };
        if (node.op >= Op::neg && node.op <= Op::not_regex) deeper(node.a);
        if (node.op >= Op::logical_and && node.op <= Op::mod) deeper(node.b);
        for (uint32_t i = 0; i < node.count; ++i) deeper(m_program.args[node.first + i]);
        if (depth > k_max_tree_depth)
            fail(peek().column, fmt::format("expression too long: more than {} operators deep", k_max_tree_depth));
        m_program.nodes.push_back(std::move(node));
        m_tree_depth.push_back(depth);
        return static_cast<uint32_t>(m_program.nodes.size() - 1);
    }
    uint32_t binary(Op op, uint32_t a, uint32_t b) { return add({op, a, b, 0, 0, 0, {}}); }

    struct Depth {
        explicit Depth(Parser& p) : parser(p) {
            if (++parser.m_depth > k_max_depth) parser.fail(parser.peek().column, "expression nested too deeply");
        }
        ~Depth() { --parser.m_depth; }
        Parser& parser;
    };

    uint32_t parse_or() {
        Depth depth(*this);
        uint32_t left = parse_and();
        while (accept(Token::kw_or)) left = binary(Op::logical_or, left, parse_and());
        return left;
    }

    uint32_t parse_and() {
        uint32_t left = parse_not();
        while (accept(Token::kw_and)) left = binary(Op::logical_and, left, parse_not());
        return left;
    }

    uint32_t parse_not() {
        Depth depth(*this);
        if (accept(Token::kw_not)) return add({Op::logical_not, parse_not(), 0, 0, 0, 0, {}});
        return parse_compare();
    }

    std::string pattern_after(std::string_view keyword) {
        if (peek().token != Token::string)
            fail(peek().column, fmt::format("expected a quoted pattern after '{}' but found {}", keyword, describe(peek())));
        return take().value;
    }

    uint32_t parse_compare() {
        uint32_t left = parse_sum();
        size_t column = peek().column;
        Token token = peek().token;
        Op op;
        switch (token) {
            case Token::eq: op = Op::eq; break;
            case Token::ne: op = Op::ne; break;
            case Token::lt: op = Op::lt; break;
            case Token::le: op = Op::le; break;
            case Token::gt: op = Op::gt; break;
            case Token::ge: op = Op::ge; break;
            case Token::match:
            case Token::not_match: {
                ++m_pos;
                size_t pattern_column = peek().column;
                std::string pattern = pattern_after(token == Token::match ? "=~" : "!~");
                auto regex = std::make_unique<re2::RE2>(pattern, re2::RE2::Quiet);
                if (!regex->ok()) fail(pattern_column, fmt::format("bad regular expression: {}", regex->error()));
                m_program.regexes.push_back(std::move(regex));
                Node node{token == Token::match ? Op::regex : Op::not_regex, left, 0, 0, 0,
                          static_cast<uint32_t>(m_program.regexes.size() - 1), {}};
                return no_chain(add(std::move(node)));
            }
            case Token::kw_not:
            case Token::kw_in:
            case Token::kw_like: {
                bool negated = accept(Token::kw_not);
                if (accept(Token::kw_like)) {
                    size_t pattern_column = peek().column;
                    std::string pattern = pattern_after("like");
                    if (auto problem = check_glob(pattern)) fail(pattern_column, *problem);
                    m_program.globs.push_back(std::move(pattern));
                    Node node{negated ? Op::not_like : Op::like, left, 0, 0, 0,
                              static_cast<uint32_t>(m_program.globs.size() - 1), {}};
                    return no_chain(add(std::move(node)));
                }
                if (accept(Token::kw_in)) return no_chain(parse_in_list(left, negated));
                fail(peek().column, fmt::format("expected 'in' or 'like' after 'not' but found {}", describe(peek())));
            }
            default: return left;
        }
        ++m_pos;
        (void)column;
        return no_chain(binary(op, left, parse_sum()));
    }

    uint32_t no_chain(uint32_t node) {
        switch (peek().token) {
            case Token::eq: case Token::ne: case Token::lt: case Token::le: case Token::gt:
            case Token::ge: case Token::match: case Token::not_match: case Token::kw_in: case Token::kw_like:
                fail(peek().column, fmt::format("comparisons do not chain: join them with 'and' before {}",
                                                describe(peek())));
            default: return node;
        }
    }

    uint32_t parse_in_list(uint32_t left, bool negated) {
        expect(Token::lbracket, "'[' to start the list after 'in'");
        std::vector<uint32_t> items;
        if (!accept(Token::rbracket)) {
            do items.push_back(parse_or());
            while (accept(Token::comma));
            expect(Token::rbracket, "',' or ']' in the list");
        }
        return add_with_args({negated ? Op::not_in : Op::in, left, 0, 0, 0, 0, {}}, items);
    }

    uint32_t add_with_args(Node node, const std::vector<uint32_t>& items) {
        node.first = static_cast<uint32_t>(m_program.args.size());
        node.count = static_cast<uint32_t>(items.size());
        m_program.args.insert(m_program.args.end(), items.begin(), items.end());
        return add(std::move(node));
    }

    uint32_t parse_sum() {
        uint32_t left = parse_product();
        for (;;) {
            if (accept(Token::plus)) left = binary(Op::add, left, parse_product());
            else if (accept(Token::minus)) left = binary(Op::sub, left, parse_product());
            else return left;
        }
    }

    uint32_t parse_product() {
        uint32_t left = parse_unary();
        for (;;) {
            if (accept(Token::star)) left = binary(Op::mul, left, parse_unary());
            else if (accept(Token::slash)) left = binary(Op::div, left, parse_unary());
            else if (accept(Token::percent)) left = binary(Op::mod, left, parse_unary());
            else return left;
        }
    }

    uint32_t parse_unary() {
        Depth depth(*this);
        if (accept(Token::minus)) {
            // Fold "-5" into a constant: no negation left to do per message.
            const Lexeme& next = peek();
            if (next.token == Token::number_int || next.token == Token::number_float) {
                ++m_pos;
                return constant(next.token == Token::number_int ? Value::of_int(-next.integer)
                                                                : Value::of_float(-next.floating));
            }
            return add({Op::neg, parse_unary(), 0, 0, 0, 0, {}});
        }
        return parse_primary();
    }

    uint32_t constant(Value value) { return add({Op::constant, 0, 0, 0, 0, 0, value}); }

    uint32_t field(const std::string& name) {
        uint32_t slot = m_symbols.intern(name);
        if (std::find(m_program.slots.begin(), m_program.slots.end(), slot) == m_program.slots.end())
            m_program.slots.push_back(slot);
        return add({Op::field, 0, 0, 0, 0, slot, {}});
    }

    uint32_t parse_primary() {
        const Lexeme& lexeme = take();
        switch (lexeme.token) {
            case Token::number_int:
            case Token::duration: return constant(Value::of_int(lexeme.integer));
            case Token::number_float: return constant(Value::of_float(lexeme.floating));
            case Token::kw_true: return constant(Value::of_bool(true));
            case Token::kw_false: return constant(Value::of_bool(false));
            case Token::string: {
                m_program.strings.push_back(std::make_unique<std::string>(lexeme.value));
                return constant(Value::of_text(*m_program.strings.back()));
            }
            case Token::quoted_name: return field(lexeme.value);
            case Token::lparen: {
                uint32_t inner = parse_or();
                if (!accept(Token::rparen))
                    fail(peek().column, fmt::format("expected ')' to close the '(' at column {} but found {}",
                                                    lexeme.column + 1, describe(peek())));
                return inner;
            }
            case Token::name: {
                if (peek().token == Token::lparen) return parse_call(lexeme);
                for (const auto& h : k_headers)
                    if (lexeme.text == h.name) return add({h.op, 0, 0, 0, 0, 0, {}});
                return field(std::string(lexeme.text));
            }
            default:
                fail(lexeme.column, fmt::format("expected a value (a number, string, field name, function or '(') "
                                                "but found {}", describe(lexeme)));
        }
    }

    uint32_t parse_call(const Lexeme& name) {
        const FunctionInfo* info = nullptr;
        for (const auto& f : k_functions)
            if (name.text == f.name) info = &f;
        if (!info)
            fail(name.column, fmt::format("unknown function '{}' (there are abs, min, max, round, floor, ceil, "
                                          "lower, upper, starts_with, ends_with, contains, len, now, exists)",
                                          name.text));
        expect(Token::lparen, "'('");
        std::vector<uint32_t> items;
        if (!accept(Token::rparen)) {
            do {
                size_t column = peek().column;
                uint32_t item = parse_or();
                if (info->op == Op::fn_exists) {
                    Op op = m_program.nodes[item].op;
                    if (op != Op::field && (op < Op::id || op > Op::body))
                        fail(column, "exists() takes a field or header name, as in exists(battery)");
                }
                items.push_back(item);
            } while (accept(Token::comma));
            if (!accept(Token::rparen))
                fail(peek().column, fmt::format("expected ',' or ')' in the arguments of {}() but found {}",
                                                name.text, describe(peek())));
        }
        if (items.size() < info->min_args || items.size() > info->max_args) {
            std::string wanted = info->min_args == info->max_args ? std::to_string(info->min_args)
                                 : info->max_args == 64
                                     ? fmt::format("at least {}", info->min_args)
                                     : fmt::format("{} or {}", info->min_args, info->max_args);
            fail(name.column, fmt::format("{}() takes {} argument{}, not {}", name.text, wanted,
                                          wanted == "1" ? "" : "s", items.size()));
        }
        return add_with_args({info->op, 0, 0, 0, 0, 0, {}}, items);
    }

    std::vector<Lexeme>& m_lexemes;
    Program& m_program;
    Symbols& m_symbols;
    size_t m_pos = 0;
    size_t m_depth = 0;
    std::vector<uint32_t> m_tree_depth;  // per node
};

}  // namespace

// ---- Expression ------------------------------------------------------------------------------

std::variant<Expression, CompileError> Expression::compile(std::string_view text, Symbols& symbols) {
    std::vector<Lexeme> lexemes;
    LexError lex_error;
    if (!tokenize(text, lexemes, lex_error)) return CompileError{lex_error.column, lex_error.message};
    if (lexemes.size() == 1) return CompileError{0, "empty expression"};
    auto program = std::make_unique<Program>();
    program->text = std::string(text);
    try {
        Parser parser(lexemes, *program, symbols);
        program->root = parser.parse();
    } catch (const ParseFailure& failure) {
        return failure.error;
    }
    return Expression(std::move(program));
}

Expression::Expression(std::unique_ptr<Program> program) : m_program(std::move(program)) {}
Expression::Expression(Expression&&) noexcept = default;
Expression& Expression::operator=(Expression&&) noexcept = default;
Expression::~Expression() = default;

Value Expression::evaluate(const Record& record, Scratch& scratch) const {
    scratch.reset();
    return m_program->eval(m_program->root, record, scratch);
}

bool Expression::holds(const Record& record, Scratch& scratch) const {
    scratch.reset();
    return m_program->truth(m_program->root, record, scratch);
}

const std::string& Expression::text() const { return m_program->text; }
const std::vector<uint32_t>& Expression::slots() const { return m_program->slots; }

}  // namespace mh::expr
