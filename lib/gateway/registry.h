// The gateway registry: who may connect to mh-endpoint (a token key and/or a pinned client
// certificate per gateway), which sources each may publish for, and its quotas. Loaded from a
// TOML file; immutable once loaded, so the endpoint holds it by shared_ptr and a SIGHUP
// reload builds a new one and swaps the pointer (connections keep the one they started with).
//
//   [defaults]                      # quotas for gateways that set none (0 = no limit)
//   messages_per_second = 1000
//   burst_messages = 2000
//   bytes_per_second = 1048576
//   burst_bytes = 2097152
//   max_connections = 4
//
//   [gateway.gw-0001]
//   token_key = "64 hex digits"     # HMAC-SHA256 key of its tokens (16..64 bytes)
//   cert_sha256 = "AB:CD:..."       # SHA-256 of its client certificate (DER), colons optional
//   sources = ["sensor-0001-*", "site-a/*"]   # globs (lib/expr/glob.h) of the sources it may publish for
//   commands = true                 # receives commands (default true)
//   messages_per_second = 50        # any quota key overrides the default for this gateway
//
// A gateway needs token_key or cert_sha256 (or both). Every mistake is reported as
// "FILE:LINE:COLUMN: what" in an Error with ExitCode::config.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/x509.h>

namespace mh::gateway {

constexpr size_t k_max_gateway_id_bytes = 128;
constexpr size_t k_min_token_key_bytes = 16;
constexpr size_t k_max_token_key_bytes = 64;

using Sha256 = std::array<uint8_t, 32>;  // same layout as tls::Fingerprint

// Why `id` cannot name a gateway, or nullopt when it can. Refused: empty, longer than
// k_max_gateway_id_bytes, anything but printable ASCII (control characters, space, DEL,
// bytes >= 0x80), the MQTT wildcards '+' and '#', and '/' (ids become topic levels:
// commands/<id>).
std::optional<std::string> check_gateway_id(std::string_view id);
inline bool valid_gateway_id(std::string_view id) { return !check_gateway_id(id); }

// Per-gateway limits the endpoint enforces; 0 means no limit.
struct Quotas {
    uint64_t messages_per_second = 1000;
    uint64_t burst_messages = 2000;
    uint64_t bytes_per_second = 1 << 20;
    uint64_t burst_bytes = 2 << 20;
    uint64_t max_connections = 4;
};

struct Gateway {
    std::string id;
    std::vector<uint8_t> token_key;   // empty: tokens are not accepted for this gateway
    std::optional<Sha256> cert_sha256;  // nullopt: certificates are not accepted
    std::vector<std::string> sources;   // glob patterns, checked when loaded
    bool commands = true;
    Quotas quotas;

    // Whether this gateway may publish for `source` (one of its patterns matches).
    bool may_publish(std::string_view source) const;
};

enum class TokenCheck {
    ok,
    unknown_gateway,  // no such gateway in the registry
    no_token_key,     // the gateway exists but accepts no tokens (certificate only)
    malformed,        // not a token of our format
    wrong_gateway,    // a valid-looking token, issued for another gateway than the one named
    bad_signature,    // the HMAC does not match: tampered, forged, or an old key
    expired,          // genuine, but its expiry has passed
};
const char* to_string(TokenCheck check);

enum class CertCheck {
    ok,
    no_certificate,       // the peer sent none
    unknown_certificate,  // its fingerprint is no gateway's cert_sha256
    not_yet_valid,        // notBefore is in the future
    expired,              // notAfter has passed
};
const char* to_string(CertCheck check);

struct CertResult {
    CertCheck check;
    const Gateway* gateway = nullptr;  // set when check == ok; owned by the Registry
};

class Registry {
public:
    // Not copyable: the fingerprint index points into the gateways (hold it by shared_ptr).
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    // Throw Error(config) with "FILE:LINE:COLUMN: reason" (or "FILE: reason" when the
    // file cannot be read).
    static std::shared_ptr<const Registry> load(const std::string& path);
    // As load, from text; `name` stands for the file name in errors.
    static std::shared_ptr<const Registry> parse(std::string_view text, const std::string& name);

    const Quotas& defaults() const { return m_defaults; }
    const std::map<std::string, Gateway, std::less<>>& gateways() const { return m_gateways; }
    size_t size() const { return m_gateways.size(); }

    const Gateway* find(std::string_view id) const;
    const Gateway* find_by_fingerprint(const Sha256& fingerprint) const;
    // Hex with or without colons, either case; nullptr when malformed or unknown.
    const Gateway* find_by_fingerprint(std::string_view hex) const;

    // False for an unknown gateway, too.
    bool may_publish(std::string_view gateway_id, std::string_view source) const;

    // `token` as the gateway presented it (MQTT password or HTTP bearer, see token.h);
    // `gateway_id` the id it claims (MQTT username), or empty to take the one in the token
    // (HTTP bearer). `gateway` (if given) is set when the result is ok.
    TokenCheck check_token(std::string_view gateway_id, std::string_view token, int64_t now_unix_s,
                           const Gateway** gateway = nullptr) const;

    // The gateway whose cert_sha256 is this (already chain-verified) certificate's
    // fingerprint, with its validity period checked against `now_unix_s`.
    CertResult check_certificate(X509* certificate, int64_t now_unix_s) const;

private:
    Registry() = default;
    Quotas m_defaults;
    std::map<std::string, Gateway, std::less<>> m_gateways;
    std::map<Sha256, const Gateway*> m_by_fingerprint;
};

// SHA-256 of the certificate's DER encoding.
Sha256 certificate_sha256(X509* certificate);
// "AB:CD:..." as `openssl x509 -noout -fingerprint -sha256` prints it.
std::string fingerprint_text(const Sha256& fingerprint);
// Parses hex with or without colons (':' between every byte or none), either case.
std::optional<Sha256> parse_fingerprint(std::string_view text);

}  // namespace mh::gateway
