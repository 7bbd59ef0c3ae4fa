// Loading the gateway registry from TOML, and the lookups the endpoint makes per connection
// (tokens, certificates) and per message (may_publish).
#include "gateway/registry.h"

#include "core/error.h"
#include "expr/glob.h"
#include "gateway/token.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <toml++/toml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace mh::gateway {
namespace {

constexpr std::string_view k_defaults_table = "defaults";
constexpr std::string_view k_gateway_table = "gateway";

// Builds one registry, throwing at the first mistake with where it is.
class Loader {
public:
    explicit Loader(const std::string& name) : m_name(name) {}

    [[noreturn]] void fail(const toml::source_region& where, std::string_view what) const {
        if (where.begin.line == 0) throw Error(ExitCode::config, fmt::format("{}: {}", m_name, what));
        throw Error(ExitCode::config, fmt::format("{}:{}:{}: {}", m_name, where.begin.line, where.begin.column, what));
    }

    // Reads the quota keys of `table` into `quotas`; true when `key` was one of them.
    bool read_quota(const toml::key& key, const toml::node& value, Quotas& quotas, bool& rate_set,
                    bool& burst_set, bool& bytes_set, bool& burst_bytes_set) const {
        uint64_t* field = nullptr;
        if (key.str() == "messages_per_second") field = &quotas.messages_per_second, rate_set = true;
        else if (key.str() == "burst_messages") field = &quotas.burst_messages, burst_set = true;
        else if (key.str() == "bytes_per_second") field = &quotas.bytes_per_second, bytes_set = true;
        else if (key.str() == "burst_bytes") field = &quotas.burst_bytes, burst_bytes_set = true;
        else if (key.str() == "max_connections") field = &quotas.max_connections;
        else return false;
        const auto* number = value.as_integer();
        if (!number) fail(value.source(), fmt::format("{} must be an integer (0 for no limit)", key.str()));
        if (number->get() < 0) fail(value.source(), fmt::format("{} must not be negative", key.str()));
        *field = static_cast<uint64_t>(number->get());
        return true;
    }

    // A burst left unset follows its rate: two seconds' worth.
    static void complete_bursts(Quotas& quotas, bool rate_set, bool burst_set, bool bytes_set, bool burst_bytes_set) {
        if (rate_set && !burst_set) quotas.burst_messages = 2 * quotas.messages_per_second;
        if (bytes_set && !burst_bytes_set) quotas.burst_bytes = 2 * quotas.bytes_per_second;
    }

    Quotas read_defaults(const toml::node& node) const {
        const auto* table = node.as_table();
        if (!table) fail(node.source(), "[defaults] must be a table of quotas");
        Quotas quotas;
        bool rate = false, burst = false, bytes = false, burst_bytes = false;
        for (auto&& [key, value] : *table) {
            if (!read_quota(key, value, quotas, rate, burst, bytes, burst_bytes))
                fail(key.source(), fmt::format("unknown key '{}' in [defaults] (known: messages_per_second, "
                                               "burst_messages, bytes_per_second, burst_bytes, max_connections)",
                                               key.str()));
        }
        complete_bursts(quotas, rate, burst, bytes, burst_bytes);
        return quotas;
    }

    Gateway read_gateway(const toml::key& id, const toml::node& node, const Quotas& defaults) const {
        if (auto reason = check_gateway_id(id.str()))
            fail(id.source(), fmt::format("bad gateway id '{}': {}", id.str(), *reason));
        const auto* table = node.as_table();
        if (!table) fail(node.source(), fmt::format("gateway.{} must be a table", id.str()));

        Gateway gateway;
        gateway.id = id.str();
        gateway.quotas = defaults;
        bool rate = false, burst = false, bytes = false, burst_bytes = false;
        for (auto&& [key, value] : *table) {
            if (key.str() == "token_key") {
                const auto* text = value.as_string();
                if (!text) fail(value.source(), "token_key must be a string of hex digits");
                auto bytes_value = parse_hex(text->get());
                if (!bytes_value) fail(value.source(), "token_key is not hex (an even number of 0-9, a-f)");
                if (bytes_value->size() < k_min_token_key_bytes || bytes_value->size() > k_max_token_key_bytes)
                    fail(value.source(), fmt::format("token_key must be {} to {} bytes ({} to {} hex digits); "
                                                     "`mh-endpoint keygen` makes one",
                                                     k_min_token_key_bytes, k_max_token_key_bytes,
                                                     2 * k_min_token_key_bytes, 2 * k_max_token_key_bytes));
                gateway.token_key = std::move(*bytes_value);
            } else if (key.str() == "cert_sha256") {
                const auto* text = value.as_string();
                if (!text) fail(value.source(), "cert_sha256 must be a string");
                gateway.cert_sha256 = parse_fingerprint(text->get());
                if (!gateway.cert_sha256)
                    fail(value.source(), "cert_sha256 is not a SHA-256 fingerprint (64 hex digits, colons "
                                         "optional, as `openssl x509 -noout -fingerprint -sha256` prints)");
            } else if (key.str() == "sources") {
                const auto* array = value.as_array();
                if (!array) fail(value.source(), "sources must be an array of glob patterns");
                for (const toml::node& element : *array) {
                    const auto* pattern = element.as_string();
                    if (!pattern) fail(element.source(), "sources must hold strings (glob patterns)");
                    if (auto reason = expr::check_glob(pattern->get()))
                        fail(element.source(), fmt::format("bad pattern '{}': {}", pattern->get(), *reason));
                    gateway.sources.push_back(pattern->get());
                }
            } else if (key.str() == "commands") {
                const auto* flag = value.as_boolean();
                if (!flag) fail(value.source(), "commands must be true or false");
                gateway.commands = flag->get();
            } else if (!read_quota(key, value, gateway.quotas, rate, burst, bytes, burst_bytes)) {
                fail(key.source(), fmt::format("unknown key '{}' in gateway.{} (known: token_key, cert_sha256, "
                                               "sources, commands and the quota keys)",
                                               key.str(), id.str()));
            }
        }
        complete_bursts(gateway.quotas, rate, burst, bytes, burst_bytes);
        if (gateway.token_key.empty() && !gateway.cert_sha256)
            fail(id.source(), fmt::format("gateway.{} has no identity: give it token_key or cert_sha256 (or both)",
                                          id.str()));
        return gateway;
    }

private:
    const std::string& m_name;
};

}  // namespace

std::optional<std::string> check_gateway_id(std::string_view id) {
    if (id.empty()) return "empty";
    if (id.size() > k_max_gateway_id_bytes)
        return fmt::format("longer than {} bytes", k_max_gateway_id_bytes);
    for (char c : id) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x21 || byte >= 0x7f)
            return "only printable ASCII without spaces may appear (no control characters, no UTF-8)";
        if (c == '+' || c == '#') return "MQTT wildcards + and # may not appear";
        if (c == '/') return "'/' may not appear (the id becomes one MQTT topic level)";
    }
    return std::nullopt;
}

bool Gateway::may_publish(std::string_view source) const {
    for (const std::string& pattern : sources)
        if (expr::glob_match(pattern, source)) return true;
    return false;
}

const char* to_string(TokenCheck check) {
    switch (check) {
    case TokenCheck::ok: return "ok";
    case TokenCheck::unknown_gateway: return "unknown_gateway";
    case TokenCheck::no_token_key: return "no_token_key";
    case TokenCheck::malformed: return "malformed";
    case TokenCheck::wrong_gateway: return "wrong_gateway";
    case TokenCheck::bad_signature: return "bad_signature";
    case TokenCheck::expired: return "expired";
    }
    return "unknown";
}

const char* to_string(CertCheck check) {
    switch (check) {
    case CertCheck::ok: return "ok";
    case CertCheck::no_certificate: return "no_certificate";
    case CertCheck::unknown_certificate: return "unknown_certificate";
    case CertCheck::not_yet_valid: return "not_yet_valid";
    case CertCheck::expired: return "expired";
    }
    return "unknown";
}

std::shared_ptr<const Registry> Registry::load(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file)
        throw Error(ExitCode::config, fmt::format("cannot read gateway registry {}: {}", path, std::strerror(errno)));
    std::ostringstream text;
    text << file.rdbuf();
    if (file.bad()) throw Error(ExitCode::config, fmt::format("cannot read gateway registry {}", path));
    return parse(text.str(), path);
}

std::shared_ptr<const Registry> Registry::parse(std::string_view text, const std::string& name) {
    Loader loader(name);
    toml::table root;
    try {
        root = toml::parse(text, name);
    } catch (const toml::parse_error& e) {
        loader.fail(e.source(), e.description());
    }

    std::shared_ptr<Registry> registry(new Registry());
    if (const toml::node* defaults = root.get(k_defaults_table)) registry->m_defaults = loader.read_defaults(*defaults);

    for (auto&& [key, value] : root) {
        if (key.str() == k_defaults_table) continue;
        if (key.str() != k_gateway_table)
            loader.fail(key.source(), fmt::format("unknown table '{}' (known: [defaults], [gateway.ID])", key.str()));
        const auto* gateways = value.as_table();
        if (!gateways) loader.fail(value.source(), "gateway must be a table of gateways: [gateway.ID]");
        for (auto&& [id, entry] : *gateways) {
            Gateway gateway = loader.read_gateway(id, entry, registry->m_defaults);
            auto [at, inserted] = registry->m_gateways.emplace(gateway.id, std::move(gateway));
            if (at->second.cert_sha256) {
                auto [other, unique] = registry->m_by_fingerprint.emplace(*at->second.cert_sha256, &at->second);
                if (!unique)
                    loader.fail(entry.as_table()->get("cert_sha256")->source(),
                                fmt::format("gateway.{} has the same cert_sha256 as gateway.{}: one certificate "
                                            "must name one gateway",
                                            id.str(), other->second->id));
            }
        }
    }
    return registry;
}

const Gateway* Registry::find(std::string_view id) const {
    auto at = m_gateways.find(id);
    return at == m_gateways.end() ? nullptr : &at->second;
}

const Gateway* Registry::find_by_fingerprint(const Sha256& fingerprint) const {
    auto at = m_by_fingerprint.find(fingerprint);
    return at == m_by_fingerprint.end() ? nullptr : at->second;
}

const Gateway* Registry::find_by_fingerprint(std::string_view hex) const {
    auto fingerprint = parse_fingerprint(hex);
    return fingerprint ? find_by_fingerprint(*fingerprint) : nullptr;
}

bool Registry::may_publish(std::string_view gateway_id, std::string_view source) const {
    const Gateway* gateway = find(gateway_id);
    return gateway && gateway->may_publish(source);
}

TokenCheck Registry::check_token(std::string_view gateway_id, std::string_view token, int64_t now_unix_s,
                                 const Gateway** gateway_out) const {
    auto parts = parse_token(token);
    if (!parts) return TokenCheck::malformed;
    std::string_view id = gateway_id.empty() ? parts->gateway : gateway_id;
    const Gateway* gateway = find(id);
    if (!gateway) return TokenCheck::unknown_gateway;
    if (parts->gateway != id) return TokenCheck::wrong_gateway;
    if (gateway->token_key.empty()) return TokenCheck::no_token_key;
    if (!token_signature_matches(gateway->token_key, *parts)) return TokenCheck::bad_signature;
    if (now_unix_s >= parts->expiry_unix_s) return TokenCheck::expired;
    if (gateway_out) *gateway_out = gateway;
    return TokenCheck::ok;
}

CertResult Registry::check_certificate(X509* certificate, int64_t now_unix_s) const {
    if (!certificate) return {CertCheck::no_certificate};
    const Gateway* gateway = find_by_fingerprint(certificate_sha256(certificate));
    if (!gateway) return {CertCheck::unknown_certificate};
    time_t now = static_cast<time_t>(now_unix_s);
    // X509_cmp_time: -1 when the certificate's time is before `now`, 1 after, 0 on a broken time.
    int before = X509_cmp_time(X509_get0_notBefore(certificate), &now);
    if (before >= 0) return {before == 0 ? CertCheck::expired : CertCheck::not_yet_valid};
    if (X509_cmp_time(X509_get0_notAfter(certificate), &now) <= 0) return {CertCheck::expired};
    return {CertCheck::ok, gateway};
}

Sha256 certificate_sha256(X509* certificate) {
    Sha256 digest{};
    unsigned int size = 0;
    X509_digest(certificate, EVP_sha256(), digest.data(), &size);
    return digest;
}

std::string fingerprint_text(const Sha256& fingerprint) {
    static constexpr char k_digits[] = "0123456789ABCDEF";
    std::string text;
    text.reserve(fingerprint.size() * 3);
    for (uint8_t b : fingerprint) {
        if (!text.empty()) text += ':';
        text += k_digits[b >> 4];
        text += k_digits[b & 15];
    }
    return text;
}

std::optional<Sha256> parse_fingerprint(std::string_view text) {
    std::string hex;
    if (text.size() == 3 * 32 - 1) {
        for (size_t i = 0; i < text.size(); ++i) {
            if (i % 3 == 2) {
                if (text[i] != ':') return std::nullopt;
            } else {
                hex += text[i];
            }
        }
    } else if (text.size() == 2 * 32) {
        hex = text;
    } else {
        return std::nullopt;
    }
    auto bytes = parse_hex(hex);
    if (!bytes) return std::nullopt;
    Sha256 fingerprint{};
    std::copy(bytes->begin(), bytes->end(), fingerprint.begin());
    return fingerprint;
}

}  // namespace mh::gateway
