// Gateway tokens: issued and checked against the registry, and refused when expired,
// tampered with, presented for another gateway, or not tokens at all.
#include "gateway/registry.h"
#include "gateway/token.h"

#include <gtest/gtest.h>

#include <openssl/hmac.h>

namespace {

using namespace mh::gateway;

const std::string k_key_hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const std::string k_other_key_hex = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr int64_t k_now = 1'800'000'000;

std::shared_ptr<const Registry> registry() {
    return Registry::parse("[gateway.gw-1]\ntoken_key = \"" + k_key_hex +
                               "\"\n"
                               "[gateway.\"site.a.gw-2\"]\ntoken_key = \"" +
                               k_other_key_hex +
                               "\"\n"
                               "[gateway.cert-only]\ncert_sha256 = \"" +
                               std::string(64, 'a') + "\"\n",
                           "g.toml");
}

std::vector<uint8_t> key(const std::string& hex) { return *parse_hex(hex); }

TEST(Token, HasTheDocumentedForm) {
    std::string token = issue_token(key(k_key_hex), "gw-1", k_now + 60);
    std::string prefix = "mh1.gw-1." + std::to_string(k_now + 60) + ".";
    ASSERT_EQ(token.substr(0, prefix.size()), prefix);
    EXPECT_EQ(token.size(), prefix.size() + k_token_signature_chars);

    // The signature is HMAC-SHA256 over "mh1\n<gateway>\n<expiry>", computed here independently.
    std::string text = "mh1\ngw-1\n" + std::to_string(k_now + 60);
    auto k = key(k_key_hex);
    unsigned char mac[32];
    unsigned int size = 0;
    HMAC(EVP_sha256(), k.data(), k.size(), reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac,
         &size);
    ASSERT_EQ(size, 32u);
    // base64url of the 32 bytes: the first 6 bytes give the first 8 characters.
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string head;
    for (int i = 0; i < 6; i += 3) {
        uint32_t v = mac[i] << 16 | mac[i + 1] << 8 | mac[i + 2];
        for (int shift : {18, 12, 6, 0}) head += alphabet[(v >> shift) & 63];
    }
    EXPECT_EQ(token.substr(prefix.size(), 8), head);
}

TEST(Token, GoodTokenIsAccepted) {
    auto r = registry();
    std::string token = issue_token(key(k_key_hex), "gw-1", k_now + 3600);
    const Gateway* gateway = nullptr;
    EXPECT_EQ(r->check_token("gw-1", token, k_now, &gateway), TokenCheck::ok);
    ASSERT_NE(gateway, nullptr);
    EXPECT_EQ(gateway->id, "gw-1");
    // HTTP bearer: no username, the id comes from the token.
    EXPECT_EQ(r->check_token("", token, k_now), TokenCheck::ok);
}

TEST(Token, GatewayIdsWithDotsWork) {
    auto r = registry();
    std::string token = issue_token(key(k_other_key_hex), "site.a.gw-2", k_now + 10);
    auto parts = parse_token(token);
    ASSERT_TRUE(parts);
    EXPECT_EQ(parts->gateway, "site.a.gw-2");
    EXPECT_EQ(parts->expiry_unix_s, k_now + 10);
    EXPECT_EQ(r->check_token("site.a.gw-2", token, k_now), TokenCheck::ok);
    EXPECT_EQ(r->check_token("", token, k_now), TokenCheck::ok);
}

TEST(Token, ExpiredTokenIsRefused) {
    auto r = registry();
    std::string token = issue_token(key(k_key_hex), "gw-1", k_now);
    EXPECT_EQ(r->check_token("gw-1", token, k_now - 1), TokenCheck::ok);
    EXPECT_EQ(r->check_token("gw-1", token, k_now), TokenCheck::expired);
    EXPECT_EQ(r->check_token("gw-1", token, k_now + 86400), TokenCheck::expired);
}

TEST(Token, TamperedTokenIsRefused) {
    auto r = registry();
    std::string token = issue_token(key(k_key_hex), "gw-1", k_now + 60);

    // A later expiry with the old signature.
    std::string later = token;
    later.replace(later.find(std::to_string(k_now + 60)), 10, std::to_string(k_now + 99));
    EXPECT_EQ(r->check_token("gw-1", later, k_now), TokenCheck::bad_signature);

    // Every single character of the signature flipped.
    size_t signature_at = token.size() - k_token_signature_chars;
    for (size_t i = signature_at; i < token.size(); ++i) {
        std::string flipped = token;
        flipped[i] = flipped[i] == 'A' ? 'B' : 'A';
        EXPECT_EQ(r->check_token("gw-1", flipped, k_now), TokenCheck::bad_signature) << i;
    }

    // Signed with another key.
    EXPECT_EQ(r->check_token("gw-1", issue_token(key(k_other_key_hex), "gw-1", k_now + 60), k_now),
              TokenCheck::bad_signature);
}

TEST(Token, TokenForAnotherGatewayIsRefused) {
    auto r = registry();
    std::string for_two = issue_token(key(k_other_key_hex), "site.a.gw-2", k_now + 60);
    EXPECT_EQ(r->check_token("gw-1", for_two, k_now), TokenCheck::wrong_gateway);
    // Rewriting the id inside the token breaks the signature.
    std::string renamed = "mh1.gw-1" + for_two.substr(std::string("mh1.site.a.gw-2").size());
    EXPECT_EQ(r->check_token("gw-1", renamed, k_now), TokenCheck::bad_signature);
    EXPECT_EQ(r->check_token("", renamed, k_now), TokenCheck::bad_signature);
}

TEST(Token, UnknownGatewayAndCertificateOnly) {
    auto r = registry();
    EXPECT_EQ(r->check_token("gw-9", issue_token(key(k_key_hex), "gw-9", k_now + 60), k_now),
              TokenCheck::unknown_gateway);
    EXPECT_EQ(r->check_token("", issue_token(key(k_key_hex), "gw-9", k_now + 60), k_now),
              TokenCheck::unknown_gateway);
    EXPECT_EQ(r->check_token("cert-only", issue_token(key(k_key_hex), "cert-only", k_now + 60), k_now),
              TokenCheck::no_token_key);
}

TEST(Token, MalformedTokensAreRefused) {
    auto r = registry();
    std::string good = issue_token(key(k_key_hex), "gw-1", k_now + 60);
    std::string signature = good.substr(good.size() - k_token_signature_chars);
    std::string expiry = std::to_string(k_now + 60);
    for (const std::string& bad : {
             std::string(),
             std::string("mh1."),
             std::string("mh1..."),
             "mh2.gw-1." + expiry + "." + signature,
             "gw-1." + expiry + "." + signature,
             "mh1." + expiry + "." + signature,                 // no gateway
             "mh1.gw-1.." + signature,                          // no expiry
             "mh1.gw-1.0" + expiry + "." + signature,           // leading zero
             "mh1.gw-1.-" + expiry + "." + signature,           // sign
             "mh1.gw-1.-0." + signature,                        // negative zero
             "mh1.gw-1.-0000000000." + signature,
             "mh1.gw-1.+" + expiry + "." + signature,
             "mh1.gw-1.1e9." + signature,
             "mh1.gw-1.99999999999999999999." + signature,      // overflow
             "mh1.gw-1." + expiry + ".",                        // no signature
             "mh1.gw-1." + expiry + "." + signature + "A",      // too long
             "mh1.gw-1." + expiry + "." + signature.substr(1),  // too short
             "mh1.gw-1." + expiry + "." + signature.substr(1) + "=",
             "mh1.gw-1." + expiry + "." + signature.substr(1) + "+",
             "mh1.gw/1." + expiry + "." + signature,            // bad id
             "mh1.gw#1." + expiry + "." + signature,
             "mh1.gw 1." + expiry + "." + signature,
             "mh1." + std::string(300, 'g') + "." + expiry + "." + signature,
             good + "\n",
             " " + good,
         }) {
        EXPECT_EQ(r->check_token("gw-1", bad, k_now), TokenCheck::malformed) << bad;
        EXPECT_EQ(r->check_token("", bad, k_now), TokenCheck::malformed) << bad;
    }
}

TEST(Token, ReasonsHaveNames) {
    EXPECT_STREQ(to_string(TokenCheck::bad_signature), "bad_signature");
    EXPECT_STREQ(to_string(TokenCheck::expired), "expired");
    EXPECT_STREQ(to_string(CertCheck::unknown_certificate), "unknown_certificate");
}

TEST(Hex, RoundTrips) {
    EXPECT_EQ(to_hex(*parse_hex(k_key_hex)), k_key_hex);
    EXPECT_EQ(to_hex(*parse_hex("ABcd")), "abcd");
    EXPECT_FALSE(parse_hex("abc"));
    EXPECT_FALSE(parse_hex("zz"));
    EXPECT_TRUE(parse_hex("")->empty());
}

}  // namespace
