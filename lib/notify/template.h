// Notification text from a template with named placeholders and fmt format specs:
//   "{source}: {temperature:.1f} °C above {limit}"      "{{" and "}}" are literal braces.
// A name is a field of the alert message, a header (source, gateway, kind, time, id) or
// incident information (state, rule, incident, count, opened). A placeholder whose value is
// missing renders as "?"; a spec that does not suit the value's type renders the value plain.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/message.capnp.h"

namespace mh::notify {

// A value a placeholder reads: text, int, float or bool (missing when none is set).
struct TemplateValue {
    enum class Type { missing, text, integer, floating, boolean } type = Type::missing;
    std::string text;
    int64_t integer = 0;
    double floating = 0;
    bool boolean = false;
};

// Looks a name up; returns a missing value when there is none.
using TemplateLookup = std::function<TemplateValue(std::string_view name)>;

class Template {
  public:
    // Throws Error(usage) for an unclosed brace, an empty name or a spec fmt rejects for
    // every type.
    explicit Template(std::string_view text);

    std::string render(const TemplateLookup& lookup) const;
    const std::string& text() const { return m_text; }

  private:
    struct Part {
        std::string literal;  // when name is empty
        std::string name;
        std::string spec;  // "{:SPEC}" for fmt, or empty
    };
    std::string m_text;
    std::vector<Part> m_parts;
};

// The value of `name` in `message`: a header or a field (a json field as its text).
TemplateValue message_value(schema::Message::Reader message, std::string_view name);

// A value formatted with an fmt spec ("" or ".1f", ">8", ...); plain when the spec does
// not suit the type. Missing is "?".
std::string format_value(const TemplateValue& value, std::string_view spec);

}  // namespace mh::notify
