// lib/tls: handshakes between a real server and client context over a socket pair,
// with certificates made by the openssl command line in a temporary directory.
#include "core/error.h"
#include "support/pki.h"
#include "tls/tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using mh::tls::ClientCerts;
using mh::tls::Context;
using mh::tls::Io;
using mh::tls::Role;
using mh::tls::Session;

using mh::test::Pki;

const Pki& pki() {
    static Pki instance;
    return instance;
}

// Both ends of a non-blocking socket pair, driven in turn until both handshakes end.
struct Pair {
    int fds[2];
    std::unique_ptr<Session> server, client;
    Pair(const Context& server_context, const Context& client_context) {
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
        server = std::make_unique<Session>(server_context, fds[0], Role::server);
        client = std::make_unique<Session>(client_context, fds[1], Role::client);
    }
    ~Pair() {
        server.reset();
        client.reset();
        close(fds[0]);
        close(fds[1]);
    }
    // Returns the server's final status.
    Io handshake() {
        Io s = Io::want_read, c = Io::want_read;
        for (int round = 0; round < 50; ++round) {
            if (c == Io::want_read || c == Io::want_write) c = client->handshake();
            if (s == Io::want_read || s == Io::want_write) s = server->handshake();
            bool s_done = s != Io::want_read && s != Io::want_write;
            bool c_done = c != Io::want_read && c != Io::want_write;
            if (s_done && (c_done || s != Io::done)) break;
        }
        return s;
    }
};

std::shared_ptr<Context> server_context(ClientCerts certs) {
    return Context::server({pki().path("server.crt"), pki().path("server.key"), pki().path("ca.crt"), certs});
}

TEST(Tls, HandshakeThenDataBothWays) {
    auto server = server_context(ClientCerts::none);
    auto client = Context::client({pki().path("ca.crt"), "", ""});
    Pair pair(*server, *client);
    ASSERT_EQ(pair.handshake(), Io::done) << pair.server->error();
    EXPECT_FALSE(pair.server->peer_fingerprint());

    std::string hello = "hello gateway";
    auto wrote = pair.client->write(std::as_bytes(std::span(hello)));
    ASSERT_EQ(wrote.status, Io::done);
    EXPECT_EQ(wrote.bytes, hello.size());
    std::byte buffer[64];
    auto got = pair.server->read(buffer);
    ASSERT_EQ(got.status, Io::done);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buffer), got.bytes), hello);
    // Nothing more: the non-blocking read asks to wait.
    EXPECT_EQ(pair.server->read(buffer).status, Io::want_read);

    pair.client->shutdown();
    EXPECT_EQ(pair.server->read(buffer).status, Io::closed);
}

TEST(Tls, ClientCertificateGivesItsFingerprint) {
    auto server = server_context(ClientCerts::optional);
    auto client = Context::client({pki().path("ca.crt"), pki().path("gw-01.crt"), pki().path("gw-01.key")});
    Pair pair(*server, *client);
    ASSERT_EQ(pair.handshake(), Io::done) << pair.server->error();
    auto fingerprint = pair.server->peer_fingerprint();
    ASSERT_TRUE(fingerprint);

    // The same as the openssl command line computes.
    std::string command = "openssl x509 -in " + pki().path("gw-01.crt") +
                          " -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f";
    FILE* pipe = popen(command.c_str(), "r");
    char line[128] = {};
    ASSERT_TRUE(fgets(line, sizeof(line), pipe));
    pclose(pipe);
    EXPECT_EQ(mh::tls::fingerprint_hex(*fingerprint) + "\n", std::string(line));
}

TEST(Tls, OptionalClientCertificateMayBeAbsent) {
    auto server = server_context(ClientCerts::optional);
    auto client = Context::client({pki().path("ca.crt"), "", ""});
    Pair pair(*server, *client);
    ASSERT_EQ(pair.handshake(), Io::done) << pair.server->error();
    EXPECT_FALSE(pair.server->peer_fingerprint());
}

TEST(Tls, CertificateFromAnotherCaIsRefused) {
    auto server = server_context(ClientCerts::optional);
    auto client = Context::client({pki().path("ca.crt"), pki().path("stranger.crt"), pki().path("stranger.key")});
    Pair pair(*server, *client);
    EXPECT_EQ(pair.handshake(), Io::failed);
    EXPECT_NE(pair.server->error().find("certificate"), std::string::npos) << pair.server->error();
}

TEST(Tls, RequiredClientCertificateMustBeSent) {
    auto server = server_context(ClientCerts::required);
    auto client = Context::client({pki().path("ca.crt"), "", ""});
    Pair pair(*server, *client);
    EXPECT_EQ(pair.handshake(), Io::failed);
}

TEST(Tls, OldProtocolVersionsAreRefused) {
    auto server = server_context(ClientCerts::none);
    auto client = Context::client({pki().path("ca.crt"), "", ""});
    SSL_CTX_set_min_proto_version(client->get(), TLS1_VERSION);
    SSL_CTX_set_max_proto_version(client->get(), TLS1_1_VERSION);
    Pair pair(*server, *client);
    EXPECT_NE(pair.handshake(), Io::done);
}

TEST(Tls, GarbageInsteadOfAHandshakeFails) {
    auto server = server_context(ClientCerts::none);
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    Session session(*server, fds[0], Role::server);
    std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(write(fds[1], garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
    EXPECT_EQ(session.handshake(), Io::failed);
    close(fds[0]);
    close(fds[1]);
}

TEST(Tls, BadFilesAreConfigErrors) {
    try {
        Context::server({"/nonexistent.crt", pki().path("server.key"), "", ClientCerts::none});
        FAIL() << "no error";
    } catch (const mh::Error& e) {
        EXPECT_EQ(e.code(), mh::ExitCode::config);
        EXPECT_NE(std::string(e.what()).find("/nonexistent.crt"), std::string::npos);
    }
    EXPECT_THROW(Context::server({pki().path("server.crt"), pki().path("gw-01.key"), "", ClientCerts::none}),
                 mh::Error);
}

}  // namespace
