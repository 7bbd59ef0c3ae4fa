// Glob patterns for the `like` operator: * any run, ? one character, [abc] [a-z] [!x]
// classes, \ escapes. Matching is iterative (no recursion) and allocates nothing.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mh::expr {

// Why `pattern` is not a glob (an unclosed '['), or nullopt when it is fine.
std::optional<std::string> check_glob(std::string_view pattern);

bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace mh::expr
