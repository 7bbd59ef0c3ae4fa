// The read side of a TLS 1.3 connection after its handshake, without OpenSSL's record layer.
//
// Why: a gateway that sends one small record per message (mosquitto_pub) made OpenSSL 3.0's
// per-record bookkeeping the largest cost of the endpoint: each record goes through
// parameter lookups by name (OSSL_PARAM, strcmp) around an AES-GCM operation that itself
// takes a fraction of the time. This reader opens records with the same EVP AEAD (the tag
// is checked by OpenSSL, in constant time) and nothing around it. It is what kernel TLS
// does with the keys OpenSSL hands it; this kernel has no kTLS.
//
// Scope: the server's reading direction of TLS 1.3 with the three AEAD suites OpenSSL
// enables by default. OpenSSL still does the handshake and all writing; Session hands over
// to this reader at the end of the handshake and falls back to OpenSSL for anything else
// (TLS 1.2, CCM suites). Post-handshake, a client may send application data, alerts and
// KeyUpdate; anything else ends the connection (RFC 8446, 4.6 and 5).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace mh::tls {

constexpr size_t k_record_header_bytes = 5;
constexpr size_t k_aead_tag_bytes = 16;
// RFC 8446, 5.2: a protected record's body is at most 2^14 + 256 bytes, its plaintext
// (content and type) at most 2^14 + 1.
constexpr size_t k_max_ciphertext_bytes = (1 << 14) + 256;
constexpr size_t k_max_inner_plaintext_bytes = (1 << 14) + 1;

class RecordReader {
public:
    // For the cipher suite's IANA number (0x1301 AES-128-GCM-SHA256, 0x1302 AES-256-GCM-
    // SHA384, 0x1303 CHACHA20-POLY1305-SHA256) and the peer's application traffic secret;
    // nullptr for any other suite or a secret of the wrong size.
    static std::unique_ptr<RecordReader> create(uint16_t suite, std::span<const uint8_t> traffic_secret);
    ~RecordReader();  // wipes the secret and keys
    RecordReader(const RecordReader&) = delete;
    RecordReader& operator=(const RecordReader&) = delete;

    enum class Check { complete, incomplete, bad };
    // Whether `bytes` starts with a whole record (its size in `record_bytes`), with less of
    // one, or with a header no TLS 1.3 peer sends after the handshake (error() says which).
    Check check_header(std::span<const std::byte> bytes, size_t& record_bytes);

    enum class Content {
        data,          // application data: `out`'s first `content_bytes` (maybe none)
        close_notify,  // the peer closed its side cleanly
        key_updated,   // the peer changed its key; reply_key_update() says if it asked us to
        failed,        // a bad record, an alert, an unexpected message: error() says which
    };
    struct Opened {
        Content content;
        size_t content_bytes = 0;
    };
    // Decrypts one whole record (`record`, header included, as check_header measured it)
    // into `out`, which has room for its body less the tag and may be the body itself
    // (record.data() + k_record_header_bytes: in place).
    Opened open(std::span<const std::byte> record, std::byte* out);

    // The last KeyUpdate asked for one in return (RFC 8446, 4.6.3).
    bool reply_key_update() const { return m_reply_key_update; }
    const std::string& error() const { return m_error; }

private:
    struct Suite;
    RecordReader(const Suite& suite, std::span<const uint8_t> traffic_secret);
    bool derive_keys();
    Opened fail(std::string why);
    Opened handshake_message(const std::byte* body, size_t bytes);

    const Suite& m_suite;
    uint8_t m_secret[48] = {};  // the current traffic secret (hash size bytes)
    uint8_t m_key[32] = {};
    uint8_t m_iv[12] = {};
    uint64_t m_sequence = 0;    // records opened with this key
    uint64_t m_key_id = 0;      // names this key in the cache of cipher contexts
    bool m_reply_key_update = false;
    std::string m_error;
};

}  // namespace mh::tls
