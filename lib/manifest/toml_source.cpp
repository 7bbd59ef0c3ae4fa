// Shared by the manifest and test-file loaders (see toml_source.h).
#include "manifest/toml_source.h"

#include <fmt/format.h>

namespace mh::manifest {

std::optional<toml::table> parse_toml(std::string_view text, std::vector<Diagnostic>& errors) {
#if TOML_EXCEPTIONS
    try {
        return toml::parse(text);
    } catch (const toml::parse_error& e) {
        errors.push_back({location_of(e.source()), fmt::format("not valid TOML: {}", e.description()), {}});
        return std::nullopt;
    }
#else
    auto parsed = toml::parse(text);
    if (!parsed) {
        errors.push_back({location_of(parsed.error().source()),
                          fmt::format("not valid TOML: {}", parsed.error().description()), {}});
        return std::nullopt;
    }
    return std::move(parsed).table();
#endif
}

std::string suggestion(std::string_view word, const std::vector<std::string>& candidates) {
    std::string best;
    size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
    for (const auto& candidate : candidates) {
        size_t distance = edit_distance(word, candidate);
        if (distance < best_distance) {
            best_distance = distance;
            best = candidate;
        }
    }
    return best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best);
}

std::string_view type_name(const toml::node& node) {
    switch (node.type()) {
        case toml::node_type::table: return "a table";
        case toml::node_type::array: return "an array";
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a number";
        case toml::node_type::boolean: return "a boolean";
        default: return "a date or time";
    }
}

std::string list(const std::vector<std::string>& words) {
    std::string text;
    for (const auto& word : words) text += (text.empty() ? "" : ", ") + word;
    return text;
}

void TomlChecks::unknown_key(const toml::key& key, std::string_view table, const std::vector<std::string>& allowed) {
    error(location_of(key.source()), fmt::format("unknown key '{}' in {}{}; the keys there are: {}", key.str(), table,
                                                 suggestion(key.str(), allowed), list(allowed)));
}

std::optional<std::string> TomlChecks::string_value(const toml::key& key, const toml::node& node,
                                                    std::string_view table) {
    if (auto* value = node.as_string()) return value->get();
    error(location_of(node), fmt::format("'{}' in {} must be a string, not {}", key.str(), table, type_name(node)));
    return std::nullopt;
}

}  // namespace mh::manifest
