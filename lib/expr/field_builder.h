// Writing expression values back into messages: what --set (mh-filter), aggregates and
// detector alerts (mh-aggregate) put into the fields they build.
#pragma once

#include "expr/expr.h"
#include "schema/message.capnp.h"

#include <cstring>
#include <string_view>

namespace mh::expr {

// Fills a Text a builder has just sized to `from` (capnp's init*(size) adds the NUL itself).
inline void copy_text(capnp::Text::Builder to, std::string_view from) {
    std::memcpy(to.begin(), from.data(), from.size());
}

inline void set_name(schema::Field::Builder field, std::string_view name) {
    copy_text(field.initName(static_cast<unsigned>(name.size())), name);
}

// boolean -> bool, integer -> int, floating -> float, text -> text; missing leaves it unset.
inline void set_value(schema::Field::Value::Builder to, const Value& value) {
    switch (value.type) {
        case Type::boolean: to.setBool(value.boolean); break;
        case Type::integer: to.setInt(value.integer); break;
        case Type::floating: to.setFloat(value.floating); break;
        case Type::text: copy_text(to.initText(static_cast<unsigned>(value.text.size())), value.text); break;
        case Type::missing: break;
    }
}

}  // namespace mh::expr
