// Fuzzes lib/tls RecordReader, the endpoint's own reading of TLS 1.3 records. The input is a
// list of records the harness seals as a client would (AES-128-GCM, keys from a fixed
// traffic secret by OpenSSL's own TLS13-KDF), so what lies behind the authentication is
// reached: content types, padding, alerts, handshake messages, KeyUpdate (the harness
// follows a well-formed one too). Or, when the first byte is odd, raw bytes as they would
// arrive. Checks: a record the harness sealed never fails authentication; application data
// comes out as it went in; a reader that failed or closed is not fed more.
#include "tls/record_reader.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using mh::tls::RecordReader;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "tls_record_fuzz: %s\n", what);
    std::abort();
}

void expand(const std::vector<uint8_t>& secret, const char* label, uint8_t* out, size_t bytes) {
    static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_TLS1_3_KDF, nullptr);
    EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    char digest[] = "SHA256";
    char prefix[] = "tls13 ";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret.data()), secret.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, const_cast<char*>(label), std::strlen(label)),
        OSSL_PARAM_construct_end()};
    if (EVP_KDF_derive(ctx, out, bytes, params) != 1) fail("TLS13-KDF failed");
    EVP_KDF_CTX_free(ctx);
}

// The client's side: seals records under its current secret.
struct Sealer {
    std::vector<uint8_t> secret = std::vector<uint8_t>(32, 0x5a);
    uint64_t sequence = 0;

    std::vector<uint8_t> seal(uint8_t type, const uint8_t* content, size_t size, size_t padding) {
        uint8_t key[16], iv[12];
        expand(secret, "key", key, sizeof(key));
        expand(secret, "iv", iv, sizeof(iv));
        for (int i = 0; i < 8; ++i) iv[11 - i] ^= static_cast<uint8_t>(sequence >> (8 * i));
        ++sequence;
        std::vector<uint8_t> inner(content, content + size);
        inner.push_back(type);
        inner.resize(inner.size() + padding, 0);
        size_t length = inner.size() + 16;
        std::vector<uint8_t> record(5 + length);
        record[0] = 23, record[1] = 3, record[2] = 3;
        record[3] = static_cast<uint8_t>(length >> 8), record[4] = static_cast<uint8_t>(length);
        EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
        int n = 0;
        if (EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, key, iv) != 1 ||
            EVP_EncryptUpdate(ctx, nullptr, &n, record.data(), 5) != 1 ||
            EVP_EncryptUpdate(ctx, record.data() + 5, &n, inner.data(), static_cast<int>(inner.size())) != 1 ||
            EVP_EncryptFinal_ex(ctx, record.data() + 5 + n, &n) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, record.data() + 5 + inner.size()) != 1)
            fail("sealing failed");
        EVP_CIPHER_CTX_free(ctx);
        return record;
    }
    void update() {
        std::vector<uint8_t> next(32);
        expand(secret, "traffic upd", next.data(), next.size());
        secret = next;
        sequence = 0;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    Sealer client;
    auto reader = RecordReader::create(0x1301, client.secret);
    if (!reader) fail("no reader for AES-128-GCM");
    std::vector<std::byte> out(mh::tls::k_max_ciphertext_bytes);
    auto feed = [&](const std::vector<uint8_t>& bytes, const std::vector<uint8_t>* expected) {
        // Returns false once the reader has ended (failed or closed).
        size_t at = 0;
        while (at < bytes.size()) {
            std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(bytes.data()) + at, bytes.size() - at);
            size_t record_bytes = 0;
            switch (reader->check_header(rest, record_bytes)) {
                case RecordReader::Check::bad: return false;
                case RecordReader::Check::incomplete: return true;
                case RecordReader::Check::complete: break;
            }
            if (record_bytes - mh::tls::k_record_header_bytes - mh::tls::k_aead_tag_bytes > out.size())
                fail("check_header let through a record larger than the largest");
            auto opened = reader->open(rest.first(record_bytes), out.data());
            at += record_bytes;
            if (opened.content == RecordReader::Content::failed) {
                if (expected && reader->error().find("bad_record_mac") != std::string::npos)
                    fail("a record sealed with the right key failed authentication");
                return false;
            }
            if (opened.content == RecordReader::Content::close_notify) return false;
            if (opened.content == RecordReader::Content::data && expected && opened.content_bytes &&
                (opened.content_bytes != expected->size() ||
                 std::memcmp(out.data(), expected->data(), expected->size()) != 0))
                fail("application data came out other than it went in");
        }
        return true;
    };
    if (data[0] & 1) {  // raw bytes, as from the socket
        feed(std::vector<uint8_t>(data + 1, data + size), nullptr);
        return 0;
    }
    // Records: type, a 2-byte content size, padding, the content.
    size_t at = 1;
    while (at + 4 <= size) {
        uint8_t type = data[at];
        size_t want = static_cast<size_t>(data[at + 1]) << 8 | data[at + 2];
        size_t padding = data[at + 3];
        at += 4;
        size_t content = std::min(want, size - at);
        std::vector<uint8_t> text(data + at, data + at + content);
        at += content;
        if (text.size() + 1 + padding + 16 > mh::tls::k_max_ciphertext_bytes) continue;  // no client seals it
        std::vector<uint8_t> record = client.seal(type, text.data(), text.size(), padding);
        // What the record says, read as TLS 1.3 reads it: its type is the last byte that is
        // not zero (a type 0 with zeros before it lets a content byte stand as the type).
        std::vector<uint8_t> inner = text;
        inner.push_back(type);
        while (!inner.empty() && inner.back() == 0) inner.pop_back();
        uint8_t said = inner.empty() ? 0 : inner.back();
        if (!inner.empty()) inner.pop_back();
        bool key_update = said == 22 && inner.size() == 5 && inner[0] == 24 && inner[1] == 0 && inner[2] == 0 &&
                          inner[3] == 1 && inner[4] <= 1;
        std::vector<uint8_t> expected = said == 23 ? inner : std::vector<uint8_t>{};
        if (!feed(record, &expected)) return 0;
        if (key_update) client.update();
    }
    return 0;
}
