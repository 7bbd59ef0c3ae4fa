// Provisioning gateway identities: token keys, tokens, and a development certificate
// authority with gateway (client) and server certificates, all through the OpenSSL API.
// Keys are ECDSA P-256; certificates are signed with SHA-256. Files are PEM; key files are
// created 0600 and nothing that exists is overwritten. Errors are mh::Error: io (74) for
// files, config (78) for a registry that lacks what is asked, usage (64) for bad arguments.
#pragma once

#include "gateway/registry.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mh::gateway {

constexpr size_t k_token_key_bytes = 32;
constexpr int64_t k_seconds_per_day = 86'400;

// File names inside the directories the commands take.
constexpr std::string_view k_ca_cert_file = "ca.crt";
constexpr std::string_view k_ca_key_file = "ca.key";
constexpr std::string_view k_server_base_name = "server";

// k_token_key_bytes random bytes (RAND_bytes) as lowercase hex: a registry token_key.
std::string generate_token_key_hex();

// A token for `gateway` from `registry`, valid until `expiry_unix_s`. Throws config when the
// gateway is unknown or has no token_key.
std::string make_token(const Registry& registry, std::string_view gateway, int64_t expiry_unix_s);

struct Validity {
    int64_t days = 365;        // notAfter = notBefore + days
    int64_t backdate_s = 0;    // notBefore = now - backdate_s (a past window makes expired certs for tests)
};

struct Issued {
    std::string cert_file;
    std::string key_file;
    Sha256 fingerprint{};  // of the certificate's DER encoding
};

// DIR/ca.key and DIR/ca.crt: a self-signed CA (CA:TRUE, pathlen 0, keyCertSign) named `name`.
// DIR is created (0700) if missing.
Issued make_ca(const std::string& dir, const std::string& name, const Validity& validity);

// OUT/<gateway>.key and OUT/<gateway>.crt: a client certificate (clientAuth) with
// CN = gateway id, signed by the CA in `ca_dir`. The id must be valid and at most 64 bytes
// (the longest CN X.509 allows).
Issued make_gateway_cert(const std::string& ca_dir, std::string_view gateway, const std::string& out_dir,
                         const Validity& validity);

// OUT/server.key and OUT/server.crt: a server certificate (serverAuth) with every host as a
// subjectAltName (IPv4/IPv6 literals as IP, the rest as DNS; "*.example.org" allowed) and
// the first as CN, signed by the CA in `ca_dir`.
Issued make_server_cert(const std::string& ca_dir, const std::vector<std::string>& hosts, const std::string& out_dir,
                        const Validity& validity);

}  // namespace mh::gateway
