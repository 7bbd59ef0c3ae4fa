// Gateway tokens: HMAC-SHA256 signatures over id and expiry (format in token.h).
#include "gateway/token.h"

#include "gateway/registry.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>

namespace mh::gateway {
namespace {

constexpr char k_base64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(std::span<const uint8_t> bytes) {
    std::string out;
    out.reserve((bytes.size() * 4 + 2) / 3);
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        uint32_t v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
        out += k_base64url[(v >> 18) & 63];
        out += k_base64url[(v >> 12) & 63];
        out += k_base64url[(v >> 6) & 63];
        out += k_base64url[v & 63];
    }
    size_t rest = bytes.size() - i;
    if (rest == 1) {
        uint32_t v = bytes[i] << 16;
        out += k_base64url[(v >> 18) & 63];
        out += k_base64url[(v >> 12) & 63];
    } else if (rest == 2) {
        uint32_t v = (bytes[i] << 16) | (bytes[i + 1] << 8);
        out += k_base64url[(v >> 18) & 63];
        out += k_base64url[(v >> 12) & 63];
        out += k_base64url[(v >> 6) & 63];
    }
    return out;
}

bool is_base64url_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::optional<TokenParts> parse_token(std::string_view token) {
    if (token.size() > k_max_token_chars || !token.starts_with(k_token_prefix)) return std::nullopt;
    std::string_view rest = token.substr(k_token_prefix.size());
    size_t last = rest.rfind('.');
    if (last == std::string_view::npos || last == 0) return std::nullopt;
    size_t middle = rest.rfind('.', last - 1);
    if (middle == std::string_view::npos) return std::nullopt;

    TokenParts parts;
    parts.gateway = rest.substr(0, middle);
    std::string_view expiry = rest.substr(middle + 1, last - middle - 1);
    parts.signature = rest.substr(last + 1);

    if (!valid_gateway_id(parts.gateway)) return std::nullopt;
    // Canonical decimal only, so that exactly one text stands for each signed expiry.
    if (expiry.empty() || (expiry.size() > 1 && expiry[0] == '0')) return std::nullopt;
    for (char c : expiry)
        if (c < '0' || c > '9') return std::nullopt;  // from_chars would take "-0"
    auto [end, error] = std::from_chars(expiry.data(), expiry.data() + expiry.size(), parts.expiry_unix_s);
    if (error != std::errc() || end != expiry.data() + expiry.size()) return std::nullopt;
    if (parts.signature.size() != k_token_signature_chars) return std::nullopt;
    for (char c : parts.signature)
        if (!is_base64url_char(c)) return std::nullopt;
    return parts;
}

std::string token_signature(std::span<const uint8_t> key, std::string_view gateway, int64_t expiry_unix_s) {
    std::string text = "mh1\n";
    text += gateway;
    text += '\n';
    text += std::to_string(expiry_unix_s);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(text.data()),
         text.size(), mac, &mac_size);
    return base64url({mac, mac_size});
}

std::string issue_token(std::span<const uint8_t> key, std::string_view gateway, int64_t expiry_unix_s) {
    std::string token(k_token_prefix);
    token += gateway;
    token += '.';
    token += std::to_string(expiry_unix_s);
    token += '.';
    token += token_signature(key, gateway, expiry_unix_s);
    return token;
}

bool token_signature_matches(std::span<const uint8_t> key, const TokenParts& parts) {
    std::string expected = token_signature(key, parts.gateway, parts.expiry_unix_s);
    return parts.signature.size() == expected.size() &&
           CRYPTO_memcmp(expected.data(), parts.signature.data(), expected.size()) == 0;
}

std::optional<std::vector<uint8_t>> parse_hex(std::string_view text) {
    if (text.size() % 2 != 0) return std::nullopt;
    std::vector<uint8_t> bytes;
    bytes.reserve(text.size() / 2);
    for (size_t i = 0; i < text.size(); i += 2) {
        int hi = hex_value(text[i]);
        int lo = hex_value(text[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        bytes.push_back(static_cast<uint8_t>(hi << 4 | lo));
    }
    return bytes;
}

std::string to_hex(std::span<const uint8_t> bytes) {
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string text;
    text.reserve(bytes.size() * 2);
    for (uint8_t b : bytes) {
        text += k_digits[b >> 4];
        text += k_digits[b & 15];
    }
    return text;
}

}  // namespace mh::gateway
