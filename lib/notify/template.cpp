#include "notify/template.h"

#include <fmt/format.h>

#include "core/error.h"
#include "message/id.h"
#include "message/time.h"

namespace mh::notify {
namespace {

constexpr std::string_view k_missing_text = "?";

std::string_view view(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

bool is_float_spec(std::string_view spec) {
    if (spec.empty()) return false;
    char type = spec.back();
    return type == 'f' || type == 'F' || type == 'e' || type == 'E' || type == 'g' || type == 'G' ||
           type == '%' || type == 'a' || type == 'A';
}

template <typename T>
std::optional<std::string> try_format(std::string_view spec, const T& value) {
    try {
        return fmt::format(fmt::runtime(fmt::format("{{:{}}}", spec)), value);
    } catch (const fmt::format_error&) {
        return std::nullopt;
    }
}

}  // namespace

std::string format_value(const TemplateValue& value, std::string_view spec) {
    using Type = TemplateValue::Type;
    std::optional<std::string> out;
    switch (value.type) {
        case Type::missing:
            return std::string(k_missing_text);
        case Type::text:
            out = try_format(spec, value.text);
            return out ? *out : value.text;
        case Type::integer:
            // "{count:.1f}" asks for a float: give it one.
            out = is_float_spec(spec) ? try_format(spec, static_cast<double>(value.integer))
                                      : try_format(spec, value.integer);
            return out ? *out : fmt::format("{}", value.integer);
        case Type::floating:
            out = try_format(spec, value.floating);
            return out ? *out : fmt::format("{}", value.floating);
        case Type::boolean:
            out = try_format(spec, std::string_view(value.boolean ? "true" : "false"));
            return out ? *out : std::string(value.boolean ? "true" : "false");
    }
    return std::string(k_missing_text);
}

Template::Template(std::string_view text) : m_text(text) {
    auto usage = [&](std::string_view why) {
        return Error(
            ExitCode::usage,
            fmt::format("--template '{}': {} (placeholders are {{name}} or {{name:spec}}, "
                        "as in '{{source}}: {{temperature:.1f}} °C'; {{{{ and }}}} are braces)",
                        text, why));
    };
    std::string literal;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '}') {
            if (i + 1 < text.size() && text[i + 1] == '}') {
                literal += '}';
                ++i;
                continue;
            }
            throw usage("a '}' without its '{' (write }} for a brace)");
        }
        if (c != '{') {
            literal += c;
            continue;
        }
        if (i + 1 < text.size() && text[i + 1] == '{') {
            literal += '{';
            ++i;
            continue;
        }
        size_t close = text.find('}', i);
        if (close == std::string_view::npos) throw usage("a '{' is not closed");
        std::string_view inside = text.substr(i + 1, close - i - 1);
        size_t colon = inside.find(':');
        std::string name(inside.substr(0, colon));
        std::string spec(colon == std::string_view::npos ? "" : inside.substr(colon + 1));
        while (!name.empty() && name.back() == ' ') name.pop_back();
        while (!name.empty() && name.front() == ' ') name.erase(name.begin());
        if (name.empty()) throw usage("a placeholder without a name");
        if (name.find('{') != std::string::npos) throw usage("a '{' inside a placeholder");
        if (!spec.empty() && !try_format(spec, 1.5) && !try_format(spec, int64_t{1}) &&
            !try_format(spec, std::string("x")))
            throw usage(fmt::format("the format '{}' of {} suits no value", spec, name));
        if (!literal.empty()) m_parts.push_back({std::move(literal), {}, {}});
        literal.clear();
        m_parts.push_back({{}, std::move(name), std::move(spec)});
        i = close;
    }
    if (!literal.empty()) m_parts.push_back({std::move(literal), {}, {}});
}

std::string Template::render(const TemplateLookup& lookup) const {
    std::string out;
    for (const auto& part : m_parts) {
        if (part.name.empty())
            out += part.literal;
        else
            out += format_value(lookup(part.name), part.spec);
    }
    return out;
}

TemplateValue message_value(schema::Message::Reader message, std::string_view name) {
    TemplateValue value;
    auto text = [&](std::string_view t) {
        value.type = TemplateValue::Type::text;
        value.text = std::string(t);
        return value;
    };
    if (name == "source") return message.hasSource() ? text(view(message.getSource())) : value;
    if (name == "gateway") return message.hasGateway() ? text(view(message.getGateway())) : value;
    if (name == "kind") return message.hasKind() ? text(view(message.getKind())) : value;
    if (name == "time") return message.getTime() ? text(format_rfc3339(message.getTime())) : value;
    if (name == "id") {
        auto id = message.getId();
        if (id.size() != 16) return value;
        char buffer[k_id_text_chars];
        char* end = format_id(std::span<const uint8_t>(id.begin(), id.size()), buffer);
        return text(std::string_view(buffer, static_cast<size_t>(end - buffer)));
    }
    for (auto field : message.getFields()) {
        if (view(field.getName()) != name) continue;
        auto v = field.getValue();
        switch (v.which()) {
            case schema::Field::Value::FLOAT:
                value.type = TemplateValue::Type::floating;
                value.floating = v.getFloat();
                break;
            case schema::Field::Value::INT:
                value.type = TemplateValue::Type::integer;
                value.integer = v.getInt();
                break;
            case schema::Field::Value::TEXT:
                return text(view(v.getText()));
            case schema::Field::Value::BOOL:
                value.type = TemplateValue::Type::boolean;
                value.boolean = v.getBool();
                break;
            case schema::Field::Value::JSON:
                return text(view(v.getJson()));
        }
        return value;
    }
    return value;
}

}  // namespace mh::notify
