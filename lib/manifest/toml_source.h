// What the manifest and the test-file loaders share about a TOML text: parsing it with the
// error at its place, places of nodes, and the "did you mean" of unknown names.
#pragma once

#include "manifest/manifest.h"

#include <toml++/toml.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::manifest {

inline Location location_of(const toml::source_region& region) { return {region.begin.line, region.begin.column}; }
inline Location location_of(const toml::node& node) { return location_of(node.source()); }

// The parsed table, or nothing with a "not valid TOML" error at its place in `errors`.
std::optional<toml::table> parse_toml(std::string_view text, std::vector<Diagnostic>& errors);

// " (did you mean 'x'?)" when one candidate is close, else "".
std::string suggestion(std::string_view word, const std::vector<std::string>& candidates);

// "a table", "an array", "a string", ...: what a node is, for errors.
std::string_view type_name(const toml::node& node);

// "a, b, c".
std::string list(const std::vector<std::string>& words);

// What both loaders do with a node that is not as expected: an error at its place.
class TomlChecks {
protected:
    explicit TomlChecks(std::vector<Diagnostic>& errors) : m_errors(errors) {}

    void error(Location where, std::string message, std::string detail = {}) {
        m_errors.push_back({where, std::move(message), std::move(detail)});
    }
    // "unknown key 'k' in T (did you mean ...?); the keys there are: ..."
    void unknown_key(const toml::key& key, std::string_view table, const std::vector<std::string>& allowed);
    std::optional<std::string> string_value(const toml::key& key, const toml::node& node, std::string_view table);

private:
    std::vector<Diagnostic>& m_errors;
};

}  // namespace mh::manifest
