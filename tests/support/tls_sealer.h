// A TLS 1.3 client's record sealing (AES-128-GCM), for the tests and the fuzz target of
// lib/tls RecordReader: keys derived from the client's traffic secret by OpenSSL's own
// TLS13-KDF (not lib/tls's HKDF), records numbered from 0, KeyUpdate followed on request.
// Throws std::runtime_error when OpenSSL fails.
#pragma once

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace mh::test {

class TlsSealer {
public:
    explicit TlsSealer(std::vector<uint8_t> traffic_secret) : m_secret(std::move(traffic_secret)) {}

    // One record: `content`, its type, `padding` zeros, sealed under the next sequence number.
    std::vector<uint8_t> seal(uint8_t type, std::string_view content, size_t padding = 0) {
        uint8_t key[16], iv[12];
        expand("key", key, sizeof(key));
        expand("iv", iv, sizeof(iv));
        for (int i = 0; i < 8; ++i) iv[11 - i] ^= static_cast<uint8_t>(m_sequence >> (8 * i));
        ++m_sequence;
        std::vector<uint8_t> inner(content.begin(), content.end());
        inner.push_back(type);
        inner.resize(inner.size() + padding, 0);
        size_t length = inner.size() + 16;
        std::vector<uint8_t> record(5 + length);
        record[0] = 23, record[1] = 3, record[2] = 3;
        record[3] = static_cast<uint8_t>(length >> 8), record[4] = static_cast<uint8_t>(length);
        EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
        int n = 0;
        bool ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, key, iv) == 1 &&
                  EVP_EncryptUpdate(ctx, nullptr, &n, record.data(), 5) == 1 &&
                  EVP_EncryptUpdate(ctx, record.data() + 5, &n, inner.data(), static_cast<int>(inner.size())) == 1 &&
                  EVP_EncryptFinal_ex(ctx, record.data() + 5 + n, &n) == 1 &&
                  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, record.data() + 5 + inner.size()) == 1;
        EVP_CIPHER_CTX_free(ctx);
        if (!ok) throw std::runtime_error("TlsSealer: sealing failed");
        return record;
    }

    // The next traffic secret, as after sending a KeyUpdate (RFC 8446, 7.2).
    void update() {
        std::vector<uint8_t> next(m_secret.size());
        expand("traffic upd", next.data(), next.size());
        m_secret = std::move(next);
        m_sequence = 0;
    }

private:
    void expand(const char* label, uint8_t* out, size_t bytes) const {
        EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_TLS1_3_KDF, nullptr);
        EVP_KDF_CTX* ctx = kdf ? EVP_KDF_CTX_new(kdf) : nullptr;
        int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
        char digest[] = "SHA256";
        char prefix[] = "tls13 ";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(m_secret.data()), m_secret.size()),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, const_cast<char*>(label), std::strlen(label)),
            OSSL_PARAM_construct_end()};
        bool ok = ctx && EVP_KDF_derive(ctx, out, bytes, params) == 1;
        EVP_KDF_CTX_free(ctx);
        EVP_KDF_free(kdf);
        if (!ok) throw std::runtime_error("TlsSealer: TLS13-KDF failed");
    }

    std::vector<uint8_t> m_secret;
    uint64_t m_sequence = 0;
};

}  // namespace mh::test
