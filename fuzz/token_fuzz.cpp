// Fuzzes the token parser and checker with any text (an MQTT password or HTTP bearer token
// is outside input). A token that checks ok must be exactly the one issue_token makes: one
// text per (gateway, expiry), so nothing else passes for it.
#include "gateway/registry.h"
#include "gateway/token.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace mh::gateway;

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "token_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const auto registry = Registry::parse(
        "[gateway.gw-1]\ntoken_key = \"000102030405060708090a0b0c0d0e0f\"\n"
        "[gateway.\"site.a.gw-2\"]\ntoken_key = \"ffeeddccbbaa99887766554433221100\"\n"
        "[gateway.cert-only]\ncert_sha256 = \"" + std::string(64, 'a') + "\"\n",
        "fuzz.toml");
    std::string_view token(reinterpret_cast<const char*>(data), size);

    auto parts = parse_token(token);
    if (parts) {
        if (!valid_gateway_id(parts->gateway)) fail("parsed a bad id", token);
        if (parts->signature.size() != k_token_signature_chars) fail("signature length", token);
        std::string again = std::string(k_token_prefix) + std::string(parts->gateway) + "." +
                            std::to_string(parts->expiry_unix_s) + "." + std::string(parts->signature);
        if (again != token) fail("parts do not give the token back", token);
    }
    for (std::string_view claimed : {std::string_view(), std::string_view("gw-1"), std::string_view("site.a.gw-2")}) {
        const Gateway* gateway = nullptr;
        TokenCheck check = registry->check_token(claimed, token, 0, &gateway);
        if ((check == TokenCheck::malformed) != !parts) fail("malformed disagrees with parse_token", token);
        if (check == TokenCheck::ok) {
            if (!gateway || issue_token(gateway->token_key, gateway->id, parts->expiry_unix_s) != token)
                fail("accepted a token that was not issued", token);
        }
    }
    return 0;
}
