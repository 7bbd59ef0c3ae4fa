// Fuzzes lib/tls RecordReader, the endpoint's own reading of TLS 1.3 records. The input is a
// list of records the harness seals as a client would (tests/support/tls_sealer.h: AES-128-
// GCM, keys from a fixed traffic secret by OpenSSL's own TLS13-KDF), so what lies behind the
// authentication is reached: content types, padding, alerts, handshake messages, KeyUpdate
// (the harness follows a well-formed one too). Or, when the first byte is odd, raw bytes as they would
// arrive. Checks: a record the harness sealed never fails authentication; application data
// comes out as it went in; a reader that failed or closed is not fed more.
#include "support/tls_sealer.h"
#include "tls/record_reader.h"

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::vector<uint8_t> secret(32, 0x5a);
    mh::test::TlsSealer client(secret);
    auto reader = RecordReader::create(0x1301, secret);
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
        std::vector<uint8_t> record =
            client.seal(type, std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), padding);
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
