// Fuzzes the gateway registry loader (TOML) with any text. A refusal must be a config Error
// naming the place; what loads must hold only valid ids, each with an identity, findable by
// id and by fingerprint.
#include "core/error.h"
#include "gateway/registry.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace mh;
using namespace mh::gateway;

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "registry_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::shared_ptr<const Registry> registry;
    try {
        registry = Registry::parse(text, "fuzz.toml");
    } catch (const Error& e) {
        if (e.code() != ExitCode::config) fail("not a config error", e.what());
        if (std::string_view(e.what()).substr(0, 10) != "fuzz.toml:") fail("error without the file name", e.what());
        return 0;
    }
    for (const auto& [id, gateway] : registry->gateways()) {
        if (id != gateway.id || !valid_gateway_id(id)) fail("bad id loaded", id);
        if (gateway.token_key.empty() && !gateway.cert_sha256) fail("gateway without identity", id);
        if (!gateway.token_key.empty() &&
            (gateway.token_key.size() < k_min_token_key_bytes || gateway.token_key.size() > k_max_token_key_bytes))
            fail("token key of a bad size", id);
        if (registry->find(id) != &gateway) fail("find", id);
        if (gateway.cert_sha256 && registry->find_by_fingerprint(fingerprint_text(*gateway.cert_sha256)) != &gateway)
            fail("find_by_fingerprint", id);
        // Each gateway's id as a source, against its own patterns and through the registry.
        if (registry->may_publish(id, id) != gateway.may_publish(id)) fail("may_publish", id);
    }
    return 0;
}
