#include "tls/record_reader.h"

#include <fmt/format.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <cstring>
#include <optional>
#include <string_view>

namespace mh::tls {

namespace {
constexpr uint8_t k_application_data = 23;
constexpr uint8_t k_alert = 21;
constexpr uint8_t k_handshake = 22;
constexpr uint8_t k_key_update = 24;     // handshake message type
constexpr uint8_t k_close_notify = 0;    // alert descriptions
constexpr uint8_t k_user_canceled = 90;  // followed by close_notify (RFC 8446, 6.1)

// An AEAD's functions, called straight in the provider that implements it. Through EVP,
// each record costs parameter lookups by name (the IV length asked for at every init, the
// tag set through a generic control): more than the decryption of a small record. These
// are the calls EVP itself makes, without them; the provider interface is OpenSSL 3's
// stable ABI.
struct ProviderAead {
    EVP_CIPHER* cipher = nullptr;  // held for the process's life: it holds the provider
    void* provider_ctx = nullptr;
    OSSL_FUNC_cipher_newctx_fn* newctx = nullptr;
    OSSL_FUNC_cipher_freectx_fn* freectx = nullptr;
    OSSL_FUNC_cipher_decrypt_init_fn* decrypt_init = nullptr;
    OSSL_FUNC_cipher_update_fn* update = nullptr;
    OSSL_FUNC_cipher_final_fn* final = nullptr;
    OSSL_FUNC_cipher_set_ctx_params_fn* set_ctx_params = nullptr;

    bool complete() const {
        return newctx && freectx && decrypt_init && update && final && set_ctx_params;
    }
};

bool names_include(std::string_view names, std::string_view name) {
    while (!names.empty()) {
        size_t colon = names.find(':');
        std::string_view one = names.substr(0, colon);
        if (one.size() == name.size() && OPENSSL_strncasecmp(one.data(), name.data(), name.size()) == 0) return true;
        if (colon == std::string_view::npos) break;
        names.remove_prefix(colon + 1);
    }
    return false;
}

// The implementation EVP would use for `name`, or nothing (not available: OpenSSL reads).
std::optional<ProviderAead> find_aead(const char* name) {
    EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, name, nullptr);
    if (!cipher) return std::nullopt;
    const OSSL_PROVIDER* provider = EVP_CIPHER_get0_provider(cipher);
    int no_cache = 0;
    const OSSL_ALGORITHM* algorithms = provider ? OSSL_PROVIDER_query_operation(provider, OSSL_OP_CIPHER, &no_cache) : nullptr;
    ProviderAead aead;
    for (const OSSL_ALGORITHM* a = algorithms; a && a->algorithm_names; ++a) {
        if (!names_include(a->algorithm_names, name)) continue;
        for (const OSSL_DISPATCH* f = a->implementation; f->function_id != 0; ++f) {
            switch (f->function_id) {
                case OSSL_FUNC_CIPHER_NEWCTX: aead.newctx = OSSL_FUNC_cipher_newctx(f); break;
                case OSSL_FUNC_CIPHER_FREECTX: aead.freectx = OSSL_FUNC_cipher_freectx(f); break;
                case OSSL_FUNC_CIPHER_DECRYPT_INIT: aead.decrypt_init = OSSL_FUNC_cipher_decrypt_init(f); break;
                case OSSL_FUNC_CIPHER_UPDATE: aead.update = OSSL_FUNC_cipher_update(f); break;
                case OSSL_FUNC_CIPHER_FINAL: aead.final = OSSL_FUNC_cipher_final(f); break;
                case OSSL_FUNC_CIPHER_SET_CTX_PARAMS: aead.set_ctx_params = OSSL_FUNC_cipher_set_ctx_params(f); break;
                default: break;
            }
        }
        break;
    }
    if (algorithms) OSSL_PROVIDER_unquery_operation(provider, OSSL_OP_CIPHER, algorithms);
    if (!aead.complete()) {
        EVP_CIPHER_free(cipher);
        return std::nullopt;
    }
    aead.cipher = cipher;
    aead.provider_ctx = OSSL_PROVIDER_get0_provider_ctx(provider);
    return aead;
}

// HKDF-Expand-Label(secret, label, "", length) for length <= the hash size: one HMAC
// (RFC 8446, 7.1; RFC 5869, 2.3).
bool expand_label(const EVP_MD* hash, std::span<const uint8_t> secret, std::string_view label,
                  uint8_t* out, size_t length) {
    uint8_t info[2 + 1 + 6 + 32 + 1 + 1];
    size_t at = 0;
    info[at++] = static_cast<uint8_t>(length >> 8);
    info[at++] = static_cast<uint8_t>(length);
    info[at++] = static_cast<uint8_t>(6 + label.size());
    std::memcpy(info + at, "tls13 ", 6);
    at += 6;
    std::memcpy(info + at, label.data(), label.size());
    at += label.size();
    info[at++] = 0;  // empty context
    info[at++] = 1;  // the block counter of T(1)
    uint8_t block[EVP_MAX_MD_SIZE];
    unsigned int block_bytes = 0;
    if (!HMAC(hash, secret.data(), static_cast<int>(secret.size()), info, at, block, &block_bytes) ||
        block_bytes < length)
        return false;
    std::memcpy(out, block, length);
    OPENSSL_cleanse(block, sizeof(block));
    return true;
}

// Cipher contexts hold an expanded key (with GCM, its hash table too): about a KiB each,
// too much to keep per idle connection. A few are shared, direct-mapped by key: a busy
// connection keeps its slot, and a connection that lost it pays one key set-up.
class ContextCache {
public:
    static constexpr size_t k_slots = 32;
    ~ContextCache() {
        for (Slot& slot : m_slots) free(slot);
    }
    // A context of `aead` set up for `key_id` (with `key`), or nullptr.
    void* get(uint64_t key_id, const ProviderAead& aead, const uint8_t* key, size_t key_bytes) {
        Slot& slot = m_slots[key_id % k_slots];
        if (slot.key_id == key_id) return slot.ctx;
        free(slot);
        slot.ctx = aead.newctx(aead.provider_ctx);
        if (!slot.ctx) return nullptr;
        slot.aead = &aead;
        if (aead.decrypt_init(slot.ctx, key, key_bytes, nullptr, 0, nullptr) != 1) {
            free(slot);
            return nullptr;
        }
        slot.key_id = key_id;
        return slot.ctx;
    }
    // A key that is gone (updated, or its connection closed) leaves no copy behind.
    void forget(uint64_t key_id) {
        Slot& slot = m_slots[key_id % k_slots];
        if (slot.key_id == key_id) free(slot);
    }

private:
    struct Slot {
        void* ctx = nullptr;
        const ProviderAead* aead = nullptr;
        uint64_t key_id = 0;
    };
    static void free(Slot& slot) {
        if (slot.ctx) slot.aead->freectx(slot.ctx);  // the provider wipes the key
        slot = {};
    }
    std::array<Slot, k_slots> m_slots;
};

ContextCache& contexts() {
    thread_local ContextCache cache;
    return cache;
}

std::atomic<uint64_t> g_next_key_id{1};
}  // namespace

struct RecordReader::Suite {
    uint16_t id;
    size_t key_bytes;
    const EVP_MD* (*hash)();
    std::optional<ProviderAead> aead;
};

std::unique_ptr<RecordReader> RecordReader::create(uint16_t suite, std::span<const uint8_t> traffic_secret) {
    static const Suite k_suites[] = {
        {0x1301, 16, EVP_sha256, find_aead("AES-128-GCM")},
        {0x1302, 32, EVP_sha384, find_aead("AES-256-GCM")},
        {0x1303, 32, EVP_sha256, find_aead("ChaCha20-Poly1305")},
    };
    for (const Suite& known : k_suites) {
        if (known.id != suite || !known.aead) continue;
        if (traffic_secret.size() != static_cast<size_t>(EVP_MD_get_size(known.hash()))) return nullptr;
        std::unique_ptr<RecordReader> reader(new RecordReader(known, traffic_secret));
        if (!reader->derive_keys()) return nullptr;
        return reader;
    }
    return nullptr;
}

RecordReader::RecordReader(const Suite& suite, std::span<const uint8_t> traffic_secret) : m_suite(suite) {
    std::memcpy(m_secret, traffic_secret.data(), traffic_secret.size());
}

RecordReader::~RecordReader() {
    contexts().forget(m_key_id);
    OPENSSL_cleanse(m_secret, sizeof(m_secret));
    OPENSSL_cleanse(m_key, sizeof(m_key));
    OPENSSL_cleanse(m_iv, sizeof(m_iv));
}

bool RecordReader::derive_keys() {
    const EVP_MD* hash = m_suite.hash();
    std::span<const uint8_t> secret(m_secret, static_cast<size_t>(EVP_MD_get_size(hash)));
    if (!expand_label(hash, secret, "key", m_key, m_suite.key_bytes) ||
        !expand_label(hash, secret, "iv", m_iv, sizeof(m_iv)))
        return false;
    if (m_key_id) contexts().forget(m_key_id);
    m_key_id = g_next_key_id.fetch_add(1, std::memory_order_relaxed);
    m_sequence = 0;
    return true;
}

RecordReader::Check RecordReader::check_header(std::span<const std::byte> bytes, size_t& record_bytes) {
    if (bytes.size() < k_record_header_bytes) return Check::incomplete;
    auto* header = reinterpret_cast<const uint8_t*>(bytes.data());
    size_t length = static_cast<size_t>(header[3]) << 8 | header[4];
    // After the handshake every record is protected, so its outer type is application data
    // and its legacy version 1.2 (RFC 8446, 5.2).
    if (header[0] != k_application_data) {
        m_error = fmt::format("TLS record of unprotected type {} after the handshake", header[0]);
        return Check::bad;
    }
    if (header[1] != 3 || header[2] != 3) {
        m_error = fmt::format("TLS record with version bytes {:02x}{:02x}, not 0303", header[1], header[2]);
        return Check::bad;
    }
    if (length > k_max_ciphertext_bytes || length < k_aead_tag_bytes + 1) {
        m_error = fmt::format("TLS record of {} bytes (1 + {} to {} allowed)", length, k_aead_tag_bytes,
                              k_max_ciphertext_bytes);
        return Check::bad;
    }
    record_bytes = k_record_header_bytes + length;
    return bytes.size() < record_bytes ? Check::incomplete : Check::complete;
}

RecordReader::Opened RecordReader::fail(std::string why) {
    // Whatever the provider queued would be taken for the next OpenSSL call's error, on
    // whichever connection makes it.
    ERR_clear_error();
    m_error = std::move(why);
    return {Content::failed};
}

RecordReader::Opened RecordReader::open(std::span<const std::byte> record, std::byte* out) {
    auto* header = reinterpret_cast<const unsigned char*>(record.data());
    const unsigned char* body = header + k_record_header_bytes;
    size_t sealed = record.size() - k_record_header_bytes - k_aead_tag_bytes;
    if (m_sequence == UINT64_MAX) return fail("TLS sequence number exhausted");
    // The nonce: the IV with the record's sequence number XORed into its last 8 bytes.
    uint8_t nonce[12];
    std::memcpy(nonce, m_iv, sizeof(nonce));
    for (int i = 0; i < 8; ++i) nonce[11 - i] ^= static_cast<uint8_t>(m_sequence >> (8 * i));
    ++m_sequence;
    const ProviderAead& aead = *m_suite.aead;
    void* ctx = contexts().get(m_key_id, aead, m_key, m_suite.key_bytes);
    auto* plain = reinterpret_cast<unsigned char*>(out);
    size_t n = 0, last = 0;
    OSSL_PARAM tag[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, const_cast<unsigned char*>(body + sealed),
                                          k_aead_tag_bytes),
        OSSL_PARAM_construct_end()};
    if (!ctx || aead.decrypt_init(ctx, nullptr, 0, nonce, sizeof(nonce), nullptr) != 1 ||
        aead.set_ctx_params(ctx, tag) != 1 ||
        aead.update(ctx, nullptr, &n, k_record_header_bytes, header, k_record_header_bytes) != 1 ||
        aead.update(ctx, plain, &n, sealed, body, sealed) != 1 || n != sealed) {
        contexts().forget(m_key_id);  // its state is unknown now
        return fail("TLS record decryption failed (cipher error)");
    }
    if (aead.final(ctx, plain + n, &last, 0) != 1)
        return fail("TLS record failed authentication (bad_record_mac): corrupted, forged or out of order");
    // The inner plaintext: content, its type, then zero padding (RFC 8446, 5.4).
    size_t inner = sealed;
    while (inner > 0 && plain[inner - 1] == 0) --inner;
    if (inner == 0) return fail("TLS record without a content type (unexpected_message)");
    if (inner > k_max_inner_plaintext_bytes) return fail("TLS record plaintext over 2^14 bytes (record_overflow)");
    uint8_t type = plain[inner - 1];
    size_t content = inner - 1;
    switch (type) {
        case k_application_data: return {Content::data, content};
        case k_alert:
            if (content != 2) return fail(fmt::format("TLS alert record of {} bytes, not 2", content));
            if (plain[1] == k_close_notify) return {Content::close_notify};
            if (plain[1] == k_user_canceled) return {Content::data, 0};
            return fail(fmt::format("TLS alert from the peer: {}", SSL_alert_desc_string_long(plain[1])));
        case k_handshake: return handshake_message(out, content);
        default: return fail(fmt::format("TLS record of content type {} after the handshake", type));
    }
}

RecordReader::Opened RecordReader::handshake_message(const std::byte* body, size_t bytes) {
    auto* message = reinterpret_cast<const uint8_t*>(body);
    // A client sends one kind after the handshake (post-handshake authentication is never
    // asked for here): KeyUpdate, whole, and last in its record, since the key changes after
    // it (RFC 8446, 5.1).
    if (bytes < 4) return fail("TLS handshake message split across records after the handshake");
    size_t length = static_cast<size_t>(message[1]) << 16 | static_cast<size_t>(message[2]) << 8 | message[3];
    if (message[0] != k_key_update)
        return fail(fmt::format("unexpected TLS handshake message of type {} after the handshake", message[0]));
    if (length != 1 || bytes != 5)
        return fail(bytes < 4 + length ? "TLS KeyUpdate split across records"
                                       : "TLS KeyUpdate malformed or not last in its record");
    if (message[4] > 1) return fail(fmt::format("TLS KeyUpdate with request_update {}", message[4]));
    const EVP_MD* hash = m_suite.hash();
    size_t hash_bytes = static_cast<size_t>(EVP_MD_get_size(hash));
    uint8_t next[48];
    if (!expand_label(hash, std::span<const uint8_t>(m_secret, hash_bytes), "traffic upd", next, hash_bytes))
        return fail("TLS KeyUpdate: cannot derive the next secret");
    std::memcpy(m_secret, next, hash_bytes);
    OPENSSL_cleanse(next, sizeof(next));
    if (!derive_keys()) return fail("TLS KeyUpdate: cannot derive the next keys");
    m_reply_key_update = message[4] == 1;
    return {Content::key_updated};
}

}  // namespace mh::tls
