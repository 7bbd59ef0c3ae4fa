#include "filter/filter.h"

#include "core/error.h"
#include "expr/field_builder.h"
#include "filter/hash.h"
#include "message/time.h"

#include <fmt/format.h>
#include <kj/exception.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace mh::filter {
namespace {
using expr::copy_text;
using expr::set_value;

// Header names: expressions read them as the message's header, so they are no field names.
constexpr std::array<std::string_view, 7> k_headers = {"id",      "time", "ingested", "source",
                                                       "gateway", "kind", "body"};
constexpr std::string_view k_rule_field = "rule";
constexpr std::string_view k_expr_field = "expr";
constexpr std::string_view k_origin_field = "origin_id";

// The output buffer holds frames back to back; a frame's words must be aligned.
static_assert(__STDCPP_DEFAULT_NEW_ALIGNMENT__ >= alignof(capnp::word));

bool is_header(std::string_view name) {
    return std::find(k_headers.begin(), k_headers.end(), name) != k_headers.end();
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

bool is_name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

// A leading NAME (an identifier, or any text in backquotes when `backquotes`), optional
// spaces and a single '=' that does not begin '==' or '=~'. Gives the name and the rest.
std::optional<std::pair<std::string, std::string_view>> leading_assignment(std::string_view text,
                                                                           bool backquotes) {
    text = trim(text);
    std::string name;
    size_t pos = 0;
    if (backquotes && !text.empty() && text.front() == '`') {
        size_t close = text.find('`', 1);
        if (close == std::string_view::npos || close == 1) return std::nullopt;
        name = std::string(text.substr(1, close - 1));
        pos = close + 1;
    } else {
        if (text.empty() || !is_name_start(text.front())) return std::nullopt;
        while (pos < text.size() && is_name_char(text[pos])) ++pos;
        name = std::string(text.substr(0, pos));
    }
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t')) ++pos;
    if (pos >= text.size() || text[pos] != '=') return std::nullopt;
    if (pos + 1 < text.size() && (text[pos + 1] == '=' || text[pos + 1] == '~'))
        return std::nullopt;
    return std::make_pair(std::move(name), text.substr(pos + 1));
}

// Columns a terminal gives the text: one per UTF-8 character.
size_t display_width(std::string_view text) {
    return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
    }));
}


void set_text(schema::Field::Builder field, std::string_view name, std::string_view text) {
    copy_text(field.initName(static_cast<unsigned>(name.size())), name);
    copy_text(field.getValue().initText(static_cast<unsigned>(text.size())), text);
}

void copy_value(schema::Field::Value::Reader from, schema::Field::Value::Builder to) {
    switch (from.which()) {
        case schema::Field::Value::FLOAT:
            to.setFloat(from.getFloat());
            break;
        case schema::Field::Value::INT:
            to.setInt(from.getInt());
            break;
        case schema::Field::Value::TEXT:
            to.setText(from.getText());
            break;
        case schema::Field::Value::BOOL:
            to.setBool(from.getBool());
            break;
        case schema::Field::Value::JSON:
            to.setJson(from.getJson());
            break;
    }
}


std::string_view view(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

MessageId derive_id(std::span<const uint8_t, 16> original, uint64_t name_hash) {
    MessageId id;
    std::copy(original.begin(), original.end(), id.begin());
    // Kept: bytes 0-5 (milliseconds), the version nibble, the two variant bits.
    uint64_t order = static_cast<uint64_t>(id[6] & 0x0f) << 8 | id[7];  // 12 bits
    uint64_t low = load_be64(id.data() + 8);
    constexpr uint64_t k_variant_mask = 0xc000'0000'0000'0000ULL;
    // mix64 is a bijection: for one rule, distinct originals keep distinct tails.
    uint64_t tail = mix64(low ^ mix64(name_hash + order));
    tail = (tail & ~k_variant_mask) | (low & k_variant_mask);
    order = (order ^ (name_hash >> 52)) & 0xfff;
    id[6] = static_cast<uint8_t>((id[6] & 0xf0) | (order >> 8));
    id[7] = static_cast<uint8_t>(order);
    for (int i = 0; i < 8; ++i) id[8 + i] = static_cast<uint8_t>(tail >> (56 - 8 * i));
    return id;
}

uint64_t sample_threshold(double rate) {
    // rate < 1 here, so rate * 2^64 fits.
    return static_cast<uint64_t>(std::ldexp(rate, 64));
}

}  // namespace

NamedRule split_alert_rule(std::string_view text) {
    if (auto named = leading_assignment(text, false))
        return {std::move(named->first), std::string(trim(named->second))};
    std::string expression(trim(text));
    return {expression, expression};
}

MessageId derive_alert_id(std::span<const uint8_t, 16> original, std::string_view rule_name) {
    return derive_id(original, hash_text(rule_name));
}

bool sample_keeps(std::span<const uint8_t, 16> id, double rate) {
    if (rate >= 1) return true;
    return hash_id(id) < sample_threshold(rate);
}

expr::Expression Filter::compile(std::string_view what, std::string_view text) {
    auto compiled = expr::Expression::compile(text, m_symbols);
    if (auto* expression = std::get_if<expr::Expression>(&compiled)) return std::move(*expression);
    const auto& error = std::get<expr::CompileError>(compiled);
    std::string prefix =
        what.empty() ? "bad expression: " : fmt::format("bad expression in {}: ", what);
    std::string rendered = error.render(text);
    while (!rendered.empty() && rendered.back() == '\n') rendered.pop_back();
    std::string message = prefix + rendered;
    // When render() puts the expression on its first line, the caret below it must move
    // right by what stands before the expression: Log's "<tool>: error: " and the prefix.
    std::string_view first(rendered.data(), std::min(rendered.find('\n'), rendered.size()));
    if (trim(first) == trim(text) && first.size() < rendered.size()) {
        std::string indent(display_width(m_log.tool()) + std::string_view(": error: ").size() +
                               display_width(prefix),
                           ' ');
        message = prefix + std::string(first);
        for (size_t start = first.size() + 1; start <= rendered.size();) {
            size_t end = std::min(rendered.find('\n', start), rendered.size());
            message += "\n" + indent + rendered.substr(start, end - start);
            start = end + 1;
        }
    }
    throw Error(ExitCode::usage, message);
}

Filter::Filter(const FilterRules& rules, const wire::FrameLimits& limits, Log& log)
    : m_log(log),
      m_opener(limits),
      m_invert(rules.invert),
      m_kind(rules.kind) {
    auto usage = [](std::string text) { return Error(ExitCode::usage, std::move(text)); };

    if (!trim(rules.expression).empty()) m_expression.emplace(compile("", rules.expression));
    if (m_invert && !m_expression)
        throw usage("--invert needs an expression whose opposite to pass");

    for (const auto& text : rules.sets) {
        auto assignment = leading_assignment(text, true);
        if (!assignment)
            throw usage(
                fmt::format("--set '{}': expected NAME=EXPR, as in --set "
                            "'temperature_f=temperature * 9 / 5 + 32' "
                            "(NAME: letters, digits, _ . -, or any text in backquotes)",
                            text));
        auto& [name, expression] = *assignment;
        if (is_header(name))
            throw usage(fmt::format("--set '{}': {} is a header, not a field{}", text, name,
                                    name == "kind" ? " (use --kind)" : ""));
        if (trim(expression).empty())
            throw usage(fmt::format("--set '{}': the expression after '=' is missing", text));
        expr::Expression compiled = compile(fmt::format("--set {}", name), expression);
        uint32_t slot = m_symbols.intern(name);
        if (std::find(m_appended.begin(), m_appended.end(), slot) == m_appended.end())
            m_appended.push_back(slot);
        m_sets.push_back({slot, std::move(compiled)});
    }

    for (const auto& text : rules.alerts) {
        NamedRule rule = split_alert_rule(text);
        if (rule.expression.empty())
            throw usage(fmt::format("--alert '{}': the expression is missing", text));
        for (const auto& other : m_alerts)
            if (other.name == rule.name)
                throw usage(
                    fmt::format("--alert '{}': two rules are named '{}'; alert ids derive from "
                                "the name, so each rule needs its own (NAME=EXPR)",
                                text, rule.name));
        bool named = rule.name != rule.expression;
        expr::Expression compiled =
            compile(named ? fmt::format("--alert {}", rule.name) : "--alert", rule.expression);
        m_alerts.push_back({rule.name, std::move(compiled), hash_text(rule.name)});
    }

    auto field_name = [&](std::string_view option, std::string_view name) {
        name = trim(name);
        if (name.empty()) throw usage(fmt::format("{}: an empty field name", option));
        if (is_header(name))
            throw usage(fmt::format("{} {}: {} is a header, not a field", option, name, name));
        return std::string(name);
    };
    std::vector<std::pair<std::string, std::string>> renames;
    for (const auto& text : rules.renames) {
        size_t equals = text.find('=');
        if (equals == std::string::npos)
            throw usage(fmt::format(
                "--rename '{}': expected OLD=NEW, as in --rename temp=temperature", text));
        std::string from = field_name("--rename", text.substr(0, equals));
        std::string to = field_name("--rename", text.substr(equals + 1));
        for (const auto& [other_from, other_to] : renames) {
            if (other_from == from) throw usage(fmt::format("--rename: {} is renamed twice", from));
            if (other_to == to)
                throw usage(fmt::format("--rename: two fields are renamed to {}", to));
        }
        if (from != to) renames.emplace_back(std::move(from), std::move(to));
    }
    std::vector<std::string> drop, keep;
    for (const auto& name : rules.drop) drop.push_back(field_name("--drop", name));
    for (const auto& name : rules.keep) keep.push_back(field_name("--keep", name));

    // Every field a rule names gets a slot, so that one pass of Record::bind finds them all.
    for (const auto& [from, to] : renames)
        m_renames.push_back({m_symbols.intern(from), m_symbols.intern(to)});
    for (const auto& name : drop) m_symbols.intern(name);
    for (const auto& name : keep) m_symbols.intern(name);

    const auto& names = m_symbols.names();
    m_out_name = names;
    m_renamed.assign(names.size(), 0);
    m_omitted.assign(names.size(), 0);
    m_replaced.assign(names.size(), 0);
    for (const auto& rename : m_renames) {
        m_out_name[rename.from] = names[rename.to];
        m_renamed[rename.from] = 1;
    }
    m_keep_only = !keep.empty();
    auto listed = [](const std::vector<std::string>& list, const std::string& name) {
        return std::find(list.begin(), list.end(), name) != list.end();
    };
    for (size_t slot = 0; slot < names.size(); ++slot) {
        const std::string& out = m_out_name[slot];
        m_omitted[slot] = listed(drop, out) || (m_keep_only && !listed(keep, out));
    }

    if (!(rules.sample > 0 && rules.sample <= 1))
        throw usage(
            fmt::format("--sample {}: expected a share above 0 and at most 1 (0.1 keeps one "
                        "message in ten)",
                        rules.sample));
    m_sampling = rules.sample < 1;
    if (m_sampling) m_sample_threshold = sample_threshold(rules.sample);

    if (!rules.dedup.empty()) {
        auto window = parse_duration_ns(rules.dedup);
        if (!window || *window <= 0)
            throw usage(fmt::format(
                "--dedup '{}': expected a window of id time such as 10m, 1h or 90s", rules.dedup));
        if (rules.dedup_max < 1 || rules.dedup_max > k_max_dedup_entries)
            throw usage(fmt::format("--dedup-max {}: expected 1 to {}", rules.dedup_max,
                                    k_max_dedup_entries));
        m_dedup = std::make_unique<DedupSet>(rules.dedup_max, *window);
    }

    m_shapes =
        !m_sets.empty() || !m_renames.empty() || !drop.empty() || m_keep_only || !m_kind.empty();
    m_needs_record = m_expression || m_shapes || !m_alerts.empty();
    m_record.emplace(m_symbols);
}

Filter::~Filter() = default;

Decision Filter::process(const wire::Frame& frame, int64_t now_ns) {
    std::optional<std::string> garbled = m_opener.open(frame, m_view);
    if (!garbled) {
        try {
            return decide(frame, now_ns);
        } catch (const kj::Exception& e) {  // a pointer of the wrong kind, met while reading
            garbled = e.getDescription().cStr();
        }
    }
    ++m_stats.garbled;
    m_garbled_reason = std::move(*garbled);
    return {Verdict::garbled, frame, {}, m_garbled_reason};
}

// A frame in mh's own layout is read from its view alone: the Cap'n Proto reader
// (m_opener.message()) is made only for a message that is rebuilt or raises alerts.
Decision Filter::decide(const wire::Frame& frame, int64_t now_ns) {
    ++m_stats.messages;
    const wire::MessageView* view = m_opener.own_layout() ? &m_view : nullptr;
    if (view ? view->barrier : m_opener.message().getControl().isBarrier()) {
        ++m_stats.barriers;
        return {Verdict::barrier, frame, {}};
    }

    if (m_dedup || m_sampling) {
        std::string_view id;
        if (view) {
            id = view->id;
        } else {
            auto data = m_opener.message().getId();
            id = {reinterpret_cast<const char*>(data.begin()), data.size()};
        }
        if (auto verdict = dedup_and_sample(id)) return {*verdict, frame, {}};
    }

    if (m_needs_record) {
        if (view)
            m_record->bind(*view, now_ns);
        else
            m_record->bind(m_opener.message(), now_ns);
    }
    if (m_expression) {
        m_scratch.reset();
        if (m_expression->holds(*m_record, m_scratch) == m_invert) {
            ++m_stats.filtered;
            return {Verdict::filtered, frame, {}};
        }
    }
    ++m_stats.passed;
    for (const auto& set : m_sets) {
        m_scratch.reset();
        m_record->set(set.slot, set.expression.evaluate(*m_record, m_scratch));
    }

    m_output.clear();
    m_frame_ends.clear();
    bool rebuilt = m_shapes && needs_rebuild(m_opener.message());
    if (rebuilt) {
        build_output(m_opener.message());
        ++m_stats.rebuilt;
    }
    for (const auto& rule : m_alerts) {
        m_scratch.reset();
        if (!rule.expression.holds(*m_record, m_scratch)) continue;
        build_alert(m_opener.message(), rule);
        ++m_stats.alerts;
    }

    m_frames.clear();
    size_t start = 0;
    for (size_t end : m_frame_ends) {
        m_frames.push_back({reinterpret_cast<const capnp::word*>(m_output.data() + start),
                            (end - start) / sizeof(capnp::word)});
        start = end;
    }
    std::span<const wire::Frame> frames(m_frames);
    if (rebuilt) return {Verdict::pass, frames[0], frames.subspan(1)};
    return {Verdict::pass, frame, frames};
}

std::optional<Verdict> Filter::dedup_and_sample(std::string_view id_data) {
    bool has_id = id_data.size() == 16;
    auto id = [&] {  // when has_id
        return std::span<const uint8_t, 16>(reinterpret_cast<const uint8_t*>(id_data.data()), 16);
    };
    if (m_dedup && has_id) {
        if (m_dedup->check(id()) == DedupSet::Seen::again) {
            ++m_stats.duplicate;
            return Verdict::duplicate;
        }
        if (m_dedup->evicted() > 0 && !m_warned_eviction) {
            m_warned_eviction = true;
            m_log.warn(
                "--dedup-max {} reached: the oldest ids are forgotten before their window ends, so "
                "late duplicates may pass (counted in mh_dedup_evicted_total); raise --dedup-max "
                "or shorten --dedup",
                m_dedup->capacity());
        }
    }
    if (m_sampling) {
        uint64_t hash = has_id ? hash_id(id()) : mix64(++m_unnamed);
        if (hash >= m_sample_threshold) {
            ++m_stats.sampled;
            return Verdict::sampled;
        }
    }
    return std::nullopt;
}

bool Filter::present(uint32_t slot) const {
    if (m_record->is_set(slot)) return m_record->field(slot).type != expr::Type::missing;
    return m_record->field_index(slot) >= 0;
}

// Plans the output's fields and says whether they differ from the input's at all: when
// nothing changes, the input's bytes go out as they came.
bool Filter::needs_rebuild(schema::Message::Reader message) {
    auto fields = message.getFields();
    auto count = static_cast<int32_t>(fields.size());
    m_slot_of_index.assign(static_cast<size_t>(count), -1);
    for (uint32_t slot = 0; slot < m_out_name.size(); ++slot) {
        int32_t index = m_record->field_index(slot);
        if (index >= 0 && index < count)
            m_slot_of_index[static_cast<size_t>(index)] = static_cast<int32_t>(slot);
    }
    // A renamed field replaces one that already has its new name (and keeps its own place).
    for (const auto& rename : m_renames)
        if (!m_renamed[rename.to] && present(rename.from) && present(rename.to))
            m_replaced[rename.to] = 1;

    bool changed = false;
    m_plan.clear();
    for (int32_t index = 0; index < count; ++index) {
        int32_t slot = m_slot_of_index[static_cast<size_t>(index)];
        if (slot < 0) {
            if (m_keep_only) {
                changed = true;
                continue;
            }
            m_plan.push_back({index, -1, From::input});
            continue;
        }
        auto s = static_cast<uint32_t>(slot);
        if (m_omitted[s] || m_replaced[s]) {
            changed = true;
            continue;
        }
        if (m_record->is_set(s)) {
            changed = true;  // a --set whose value is missing removes the field
            if (m_record->field(s).type != expr::Type::missing)
                m_plan.push_back({index, slot, From::set});
            continue;
        }
        if (m_renamed[s]) changed = true;
        m_plan.push_back({index, slot, From::input});
    }
    for (uint32_t slot : m_appended) {
        if (m_record->field_index(slot) >= 0 || m_omitted[slot] || m_replaced[slot]) continue;
        if (m_record->field(slot).type == expr::Type::missing) continue;
        m_plan.push_back({-1, static_cast<int32_t>(slot), From::set});
        changed = true;
    }
    for (const auto& rename : m_renames) m_replaced[rename.to] = 0;
    if (!m_kind.empty() && view(message.getKind()) != m_kind) changed = true;
    return changed;
}

void Filter::build_output(schema::Message::Reader message) {
    auto out = m_builder.start();
    if (message.hasId()) out.setId(message.getId());
    out.setTime(message.getTime());
    out.setIngested(message.getIngested());
    if (message.hasSource()) out.setSource(message.getSource());
    if (message.hasGateway()) out.setGateway(message.getGateway());
    if (!m_kind.empty())
        copy_text(out.initKind(static_cast<unsigned>(m_kind.size())), m_kind);
    else if (message.hasKind())
        out.setKind(message.getKind());
    if (message.hasBody()) out.setBody(message.getBody());

    auto fields = message.getFields();
    auto list = out.initFields(static_cast<unsigned>(m_plan.size()));
    for (unsigned k = 0; k < m_plan.size(); ++k) {
        const Planned& planned = m_plan[k];
        auto field = list[k];
        if (planned.slot >= 0) {
            const std::string& name = m_out_name[static_cast<size_t>(planned.slot)];
            copy_text(field.initName(static_cast<unsigned>(name.size())), name);
        } else {
            field.setName(fields[static_cast<unsigned>(planned.index)].getName());
        }
        if (planned.from == From::input)
            copy_value(fields[static_cast<unsigned>(planned.index)].getValue(), field.getValue());
        else
            set_value(field.getValue(), m_record->field(static_cast<uint32_t>(planned.slot)));
    }
    finish_frame();
}

void Filter::build_alert(schema::Message::Reader message, const AlertRule& rule) {
    auto out = m_builder.start();
    auto id_data = message.getId();
    bool has_id = id_data.size() == 16;
    if (has_id) {
        MessageId id = derive_id(std::span<const uint8_t, 16>(id_data.begin(), 16), rule.name_hash);
        out.setId(capnp::Data::Reader(id.data(), id.size()));
    }
    out.setTime(message.getTime());
    out.setIngested(message.getIngested());
    if (message.hasSource()) out.setSource(message.getSource());
    if (message.hasGateway()) out.setGateway(message.getGateway());
    copy_text(out.initKind(static_cast<unsigned>(k_alert_kind.size())), k_alert_kind);

    const auto& slots = rule.expression.slots();
    unsigned values = 0;
    for (uint32_t slot : slots)
        if (m_record->field(slot).type != expr::Type::missing) ++values;
    auto list = out.initFields((has_id ? 3 : 2) + values);
    unsigned k = 0;
    set_text(list[k++], k_rule_field, rule.name);
    set_text(list[k++], k_expr_field, rule.expression.text());
    if (has_id) {
        char text[k_id_text_chars];
        char* end = format_id(std::span<const uint8_t>(id_data.begin(), id_data.size()), text);
        set_text(list[k++], k_origin_field,
                 std::string_view(text, static_cast<size_t>(end - text)));
    }
    for (uint32_t slot : slots) {
        expr::Value value = m_record->field(slot);
        if (value.type == expr::Type::missing) continue;
        auto field = list[k++];
        const std::string& name = m_symbols.names()[slot];
        copy_text(field.initName(static_cast<unsigned>(name.size())), name);
        set_value(field.getValue(), value);
    }
    finish_frame();
}

void Filter::finish_frame() {
    wire::append_frame(m_builder.builder(), m_output);
    m_frame_ends.push_back(m_output.size());
}

}  // namespace mh::filter
