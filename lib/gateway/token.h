// Gateway tokens, signed like Azure IoT Hub's SAS tokens: HMAC-SHA256 with the gateway's
// token_key over its id and an expiry. One text form serves MQTT and HTTP:
//
//   mh1.<gateway-id>.<expiry>.<signature>
//
//   expiry     Unix seconds, decimal, no sign or leading zeros
//   signature  base64url without padding (43 characters) of
//              HMAC-SHA256(token_key, "mh1\n" + gateway-id + "\n" + expiry)
//
// MQTT: username = gateway id, password = the token (the ids must agree).
// HTTP: "Authorization: Bearer <token>" (the id is taken from the token).
// Gateway ids may contain '.', so the token is split at its first dot and its last two.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mh::gateway {

constexpr std::string_view k_token_prefix = "mh1.";
constexpr size_t k_token_signature_chars = 43;  // base64url of 32 bytes, unpadded
constexpr size_t k_max_token_chars = 256;

struct TokenParts {
    std::string_view gateway;
    int64_t expiry_unix_s = 0;
    std::string_view signature;  // base64url text, k_token_signature_chars long
};

// Splits a token; nullopt when it is not of the format above (the gateway id is checked
// with check_gateway_id, the signature only for its length and alphabet).
std::optional<TokenParts> parse_token(std::string_view token);

// The signature text for (gateway, expiry) under `key`.
std::string token_signature(std::span<const uint8_t> key, std::string_view gateway, int64_t expiry_unix_s);

// A token for `gateway` valid until `expiry_unix_s`. The caller checks the id.
std::string issue_token(std::span<const uint8_t> key, std::string_view gateway, int64_t expiry_unix_s);

// Whether the parts' signature is the one `key` gives, compared in constant time.
bool token_signature_matches(std::span<const uint8_t> key, const TokenParts& parts);

// Hex text to bytes (either case, even length); nullopt otherwise.
std::optional<std::vector<uint8_t>> parse_hex(std::string_view text);
std::string to_hex(std::span<const uint8_t> bytes);

}  // namespace mh::gateway
