// Provisioning as a library: a CA, gateway certificates that the registry recognises by
// fingerprint (and refuses when unknown, expired or not yet valid), token keys and tokens.
#include "core/error.h"
#include "gateway/provision.h"
#include "gateway/registry.h"
#include "gateway/token.h"

#include <gtest/gtest.h>

#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>

namespace {

using namespace mh;
using namespace mh::gateway;

struct FreeCert {
    void operator()(X509* cert) const { X509_free(cert); }
};
using CertPtr = std::unique_ptr<X509, FreeCert>;

CertPtr read_cert(const std::string& path) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), &BIO_free);
    EXPECT_NE(bio, nullptr) << path;
    return CertPtr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// A fresh directory per test, removed afterwards.
class Provision : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = ::testing::TempDir() + "/provision_test.XXXXXX";
        ASSERT_NE(mkdtemp(pattern.data()), nullptr);
        m_dir = pattern;
    }
    void TearDown() override { std::filesystem::remove_all(m_dir); }
    std::string path(const std::string& name) const { return m_dir + "/" + name; }

    std::string m_dir;
};

// Whether `cert` chains to the CA certificate at `ca_file`, checked by OpenSSL at `when`.
bool verifies(X509* cert, const std::string& ca_file, time_t when) {
    CertPtr ca = read_cert(ca_file);
    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
    X509_STORE_add_cert(store.get(), ca.get());
    std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> context(X509_STORE_CTX_new(),
                                                                             &X509_STORE_CTX_free);
    X509_STORE_CTX_init(context.get(), store.get(), cert, nullptr);
    X509_STORE_CTX_set_time(context.get(), 0, when);
    return X509_verify_cert(context.get()) == 1;
}

TEST_F(Provision, CertificatesIdentifyGatewaysByFingerprint) {
    Issued ca = make_ca(path("ca"), "test CA", {});
    Issued gw1 = make_gateway_cert(path("ca"), "gw-1", path("out"), {});
    Issued gw2 = make_gateway_cert(path("ca"), "gw-2", path("out"), {});
    EXPECT_EQ(gw1.cert_file, path("out") + "/gw-1.crt");
    EXPECT_EQ(gw1.key_file, path("out") + "/gw-1.key");
    EXPECT_NE(gw1.fingerprint, gw2.fingerprint);

    auto registry = Registry::parse("[gateway.gw-1]\ncert_sha256 = \"" + fingerprint_text(gw1.fingerprint) +
                                        "\"\n[gateway.other]\ncert_sha256 = \"" + to_hex(ca.fingerprint) + "\"\n",
                                    "g.toml");
    CertPtr cert1 = read_cert(gw1.cert_file);
    CertPtr cert2 = read_cert(gw2.cert_file);
    ASSERT_TRUE(cert1 && cert2);
    EXPECT_EQ(certificate_sha256(cert1.get()), gw1.fingerprint);

    time_t now = std::time(nullptr);
    EXPECT_TRUE(verifies(cert1.get(), ca.cert_file, now));

    CertResult result = registry->check_certificate(cert1.get(), now);
    EXPECT_EQ(result.check, CertCheck::ok);
    ASSERT_NE(result.gateway, nullptr);
    EXPECT_EQ(result.gateway->id, "gw-1");

    EXPECT_EQ(registry->check_certificate(cert2.get(), now).check, CertCheck::unknown_certificate);
    EXPECT_EQ(registry->check_certificate(cert2.get(), now).gateway, nullptr);
    EXPECT_EQ(registry->check_certificate(nullptr, now).check, CertCheck::no_certificate);
    // Valid for 365 days from now.
    EXPECT_EQ(registry->check_certificate(cert1.get(), now - 3600).check, CertCheck::not_yet_valid);
    EXPECT_EQ(registry->check_certificate(cert1.get(), now + 366 * k_seconds_per_day).check, CertCheck::expired);
}

TEST_F(Provision, BackdatedCertificateHasExpired) {
    make_ca(path("ca"), "test CA", {3650, 3 * k_seconds_per_day});  // valid when the gateway's was
    Issued old = make_gateway_cert(path("ca"), "gw-old", path("out"), {1, 2 * k_seconds_per_day});
    auto registry =
        Registry::parse("[gateway.gw-old]\ncert_sha256 = \"" + to_hex(old.fingerprint) + "\"\n", "g.toml");
    CertPtr cert = read_cert(old.cert_file);
    time_t now = std::time(nullptr);
    EXPECT_EQ(registry->check_certificate(cert.get(), now).check, CertCheck::expired);
    EXPECT_FALSE(verifies(cert.get(), path("ca/ca.crt"), now));
    EXPECT_TRUE(verifies(cert.get(), path("ca/ca.crt"), now - 36 * 3600));
}

TEST_F(Provision, NothingIsOverwritten) {
    make_ca(path("ca"), "test CA", {});
    Issued first = make_gateway_cert(path("ca"), "gw-1", path("out"), {});
    EXPECT_THROW(make_gateway_cert(path("ca"), "gw-1", path("out"), {}), Error);
    EXPECT_THROW(make_ca(path("ca"), "test CA", {}), Error);
    EXPECT_EQ(certificate_sha256(read_cert(first.cert_file).get()), first.fingerprint);
}

TEST_F(Provision, RefusesBadArguments) {
    make_ca(path("ca"), "test CA", {});
    auto code_of = [](auto&& call) {
        try {
            call();
        } catch (const Error& e) {
            return e.code();
        }
        return ExitCode::ok;
    };
    EXPECT_EQ(code_of([&] { make_gateway_cert(path("ca"), "a/b", path("out"), {}); }), ExitCode::usage);
    EXPECT_EQ(code_of([&] { make_gateway_cert(path("ca"), std::string(65, 'g'), path("out"), {}); }),
              ExitCode::usage);
    EXPECT_EQ(code_of([&] { make_gateway_cert(path("no-ca"), "gw-1", path("out"), {}); }), ExitCode::io);
    EXPECT_EQ(code_of([&] { make_gateway_cert(path("ca"), "gw-1", path("out"), {0, 0}); }), ExitCode::usage);
    EXPECT_EQ(code_of([&] { make_server_cert(path("ca"), {}, path("out"), {}); }), ExitCode::usage);
    EXPECT_EQ(code_of([&] { make_server_cert(path("ca"), {"a,DNS:b"}, path("out"), {}); }), ExitCode::usage);
    EXPECT_EQ(code_of([&] { make_server_cert(path("ca"), {"a b"}, path("out"), {}); }), ExitCode::usage);
    EXPECT_EQ(code_of([&] { make_server_cert(path("ca"), {"*.example.org", "::1"}, path("out"), {}); }),
              ExitCode::ok);
}

TEST(TokenKey, IsRandomHexThatTheRegistryTakes) {
    std::string key = generate_token_key_hex();
    EXPECT_EQ(key.size(), 2 * k_token_key_bytes);
    EXPECT_NE(key, generate_token_key_hex());
    auto registry = Registry::parse("[gateway.gw-1]\ntoken_key = \"" + key + "\"\n[gateway.c]\ncert_sha256 = \"" +
                                        std::string(64, '0') + "\"\n",
                                    "g.toml");
    std::string token = make_token(*registry, "gw-1", 2'000'000'000);
    EXPECT_EQ(registry->check_token("gw-1", token, 1'999'999'999), TokenCheck::ok);
    EXPECT_THROW(make_token(*registry, "gw-2", 2'000'000'000), Error);
    EXPECT_THROW(make_token(*registry, "c", 2'000'000'000), Error);
}

}  // namespace
