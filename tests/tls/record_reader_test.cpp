// lib/tls RecordReader, through a server Session: a real OpenSSL client over a socket pair,
// plus records this test seals itself with the client's traffic secret (taken from the
// client's key log; support/tls_sealer.h) to send what no OpenSSL client sends: bad content
// types, padding, alerts, foreign handshake messages.
#include "support/pki.h"
#include "support/tls_sealer.h"
#include "tls/record_reader.h"
#include "tls/tls.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using mh::tls::ClientCerts;
using mh::tls::Context;
using mh::tls::Io;
using mh::tls::IoResult;
using mh::tls::Role;
using mh::tls::Session;

const mh::test::Pki& pki() {
    static mh::test::Pki instance;
    return instance;
}

std::vector<uint8_t> from_hex(std::string_view hex) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    return out;
}

// A server Session and a raw OpenSSL client (the test needs its SSL*) over a socket pair.
struct Link {
    int fds[2] = {-1, -1};
    std::shared_ptr<Context> server_context;
    SSL_CTX* client_context = nullptr;
    SSL* client = nullptr;
    std::unique_ptr<Session> server;
    std::vector<uint8_t> client_secret;  // CLIENT_TRAFFIC_SECRET_0, from the client's key log
    int key_updates_from_server = 0;     // KeyUpdate messages the client received

    // `suites`: the client's TLS 1.3 suites (seal() writes AES-128-GCM records);
    // `max_version`: TLS1_2_VERSION for a 1.2 client.
    explicit Link(const char* suites = "TLS_AES_128_GCM_SHA256", int max_version = 0) {
        server_context = Context::server({pki().path("server.crt"), pki().path("server.key"), "", ClientCerts::none});
        client_context = SSL_CTX_new(TLS_client_method());
        SSL_CTX_load_verify_locations(client_context, pki().path("ca.crt").c_str(), nullptr);
        SSL_CTX_set_verify(client_context, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_ciphersuites(client_context, suites);
        if (max_version) SSL_CTX_set_max_proto_version(client_context, max_version);
        SSL_CTX_set_keylog_callback(client_context, [](const SSL* ssl, const char* line) {
            auto* link = static_cast<Link*>(SSL_get_app_data(ssl));
            std::string_view text(line);
            if (text.rfind("CLIENT_TRAFFIC_SECRET_0 ", 0) == 0) link->client_secret = from_hex(text.substr(text.rfind(' ') + 1));
        });
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
        server = std::make_unique<Session>(*server_context, fds[0], Role::server);
        client = SSL_new(client_context);
        SSL_set_app_data(client, this);
        SSL_set_fd(client, fds[1]);
        SSL_set_connect_state(client);
        SSL_set_msg_callback(client, [](int write_p, int, int content_type, const void* buf, size_t len, SSL* ssl, void*) {
            auto* bytes = static_cast<const uint8_t*>(buf);
            if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 && bytes[0] == SSL3_MT_KEY_UPDATE)
                ++static_cast<Link*>(SSL_get_app_data(ssl))->key_updates_from_server;
        });
    }
    ~Link() {
        server.reset();
        SSL_free(client);
        SSL_CTX_free(client_context);
        close(fds[0]);
        close(fds[1]);
    }

    bool handshake() {
        bool client_done = false;
        Io s = Io::want_read;
        for (int round = 0; round < 100 && !(client_done && s == Io::done); ++round) {
            if (!client_done) client_done = SSL_do_handshake(client) == 1;
            if (s != Io::done) s = server->handshake();
            if (s == Io::failed) return false;
        }
        return client_done && s == Io::done;
    }

    void client_write(std::string_view text) {
        size_t wrote = 0;
        ASSERT_EQ(SSL_write_ex(client, text.data(), text.size(), &wrote), 1);
        ASSERT_EQ(wrote, text.size());
    }
    std::string client_read() {
        char buffer[4096];
        size_t got = 0;
        return SSL_read_ex(client, buffer, sizeof(buffer), &got) == 1 ? std::string(buffer, got) : std::string();
    }
    void raw_write(const std::vector<uint8_t>& bytes) {
        ASSERT_EQ(::send(fds[1], bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    }

    // Reads on the server in `chunk`-byte calls until it would wait; the last status.
    Io server_read_all(std::string& into, size_t chunk = 64 << 10) {
        std::vector<std::byte> buffer(chunk);
        for (;;) {
            IoResult r = server->read(buffer);
            into.append(reinterpret_cast<const char*>(buffer.data()), r.bytes);
            if (r.status != Io::done) return r.status;
        }
    }

    // Seals one record as the client would, with its next sequence number (AES-128-GCM).
    std::unique_ptr<mh::test::TlsSealer> sealer;
    std::vector<uint8_t> seal(uint8_t type, std::string_view content, size_t padding = 0) {
        if (!sealer) sealer = std::make_unique<mh::test::TlsSealer>(client_secret);
        return sealer->seal(type, content, padding);
    }
};

TEST(RecordReader, ServerReadsTls13RecordsItselfWithEachSuite) {
    for (const char* suite : {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
        SCOPED_TRACE(suite);
        Link link(suite);
        ASSERT_TRUE(link.handshake()) << link.server->error();
        EXPECT_TRUE(link.server->reads_records());
        link.client_write("first ");
        link.client_write("second");
        std::string got;
        EXPECT_EQ(link.server_read_all(got), Io::want_read);
        EXPECT_EQ(got, "first second");
        // The other way still goes through OpenSSL.
        std::string reply = "reply";
        EXPECT_EQ(link.server->write(std::as_bytes(std::span(reply))).status, Io::done);
        EXPECT_EQ(link.client_read(), "reply");
    }
}

TEST(RecordReader, Tls12StaysWithOpenSsl) {
    Link link("TLS_AES_128_GCM_SHA256", TLS1_2_VERSION);
    ASSERT_TRUE(link.handshake()) << link.server->error();
    EXPECT_FALSE(link.server->reads_records());
    link.client_write("over TLS 1.2");
    std::string got;
    EXPECT_EQ(link.server_read_all(got), Io::want_read);
    EXPECT_EQ(got, "over TLS 1.2");
}

TEST(RecordReader, SwitchedOffLeavesReadingToOpenSsl) {
    Session::read_records_when_possible(false);
    Link link;
    bool handshake = link.handshake();
    Session::read_records_when_possible(true);
    ASSERT_TRUE(handshake) << link.server->error();
    EXPECT_FALSE(link.server->reads_records());
    link.client_write("via OpenSSL");
    std::string got;
    EXPECT_EQ(link.server_read_all(got), Io::want_read);
    EXPECT_EQ(got, "via OpenSSL");
}

// Records of every size up to the largest, split across reads, read into small and large
// spaces (small ones open records in place and hand them out in pieces).
TEST(RecordReader, StreamOfRecordsArrivesWhole) {
    for (size_t chunk : {size_t{7}, size_t{1000}, size_t{64 << 10}}) {
        SCOPED_TRACE(chunk);
        Link link;
        ASSERT_TRUE(link.handshake());
        std::mt19937 random(42);
        std::string sent, got;
        while (sent.size() < (1 << 20)) {
            size_t size = std::uniform_int_distribution<size_t>(1, random() % 4 ? 300 : 40000)(random);
            std::string piece(size, '\0');
            for (char& c : piece) c = static_cast<char>('a' + random() % 26);
            // The socket pair holds a few hundred KiB: read as it fills.
            size_t wrote = 0;
            while (SSL_write_ex(link.client, piece.data(), piece.size(), &wrote) != 1) {
                ASSERT_EQ(SSL_get_error(link.client, 0), SSL_ERROR_WANT_WRITE);
                ASSERT_NE(link.server_read_all(got, chunk), Io::failed) << link.server->error();
            }
            sent += piece;
        }
        EXPECT_EQ(link.server_read_all(got, chunk), Io::want_read) << link.server->error();
        EXPECT_EQ(got.size(), sent.size());
        EXPECT_TRUE(got == sent);
    }
}

TEST(RecordReader, KeyUpdateIsFollowedAndAnsweredWhenAsked) {
    Link link;
    ASSERT_TRUE(link.handshake());
    link.client_write("before ");
    // Asked to answer: the server's next write carries its own KeyUpdate.
    ASSERT_EQ(SSL_key_update(link.client, SSL_KEY_UPDATE_REQUESTED), 1);
    link.client_write("after ");
    for (int i = 0; i < 3; ++i) {  // and some not asking for one
        ASSERT_EQ(SSL_key_update(link.client, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
        link.client_write(std::to_string(i));
    }
    std::string got;
    EXPECT_EQ(link.server_read_all(got), Io::want_read) << link.server->error();
    EXPECT_EQ(got, "before after 012");
    EXPECT_EQ(link.key_updates_from_server, 0);
    std::string reply = "reply";
    EXPECT_EQ(link.server->write(std::as_bytes(std::span(reply))).status, Io::done);
    EXPECT_EQ(link.client_read(), "reply");
    EXPECT_EQ(link.key_updates_from_server, 1);
    link.client_write("still");
    got.clear();
    EXPECT_EQ(link.server_read_all(got), Io::want_read) << link.server->error();
    EXPECT_EQ(got, "still");
}

TEST(RecordReader, CloseNotifyEndsTheStreamCleanly) {
    Link link;
    ASSERT_TRUE(link.handshake());
    link.client_write("last words");
    SSL_shutdown(link.client);
    std::string got;
    EXPECT_EQ(link.server_read_all(got), Io::closed);
    EXPECT_EQ(got, "last words");
}

TEST(RecordReader, EndOfStreamInsideARecordIsAnUncleanClose) {
    Link link;
    ASSERT_TRUE(link.handshake());
    std::vector<uint8_t> record = link.seal(23, "cut short");
    record.resize(record.size() - 3);
    link.raw_write(record);
    shutdown(link.fds[1], SHUT_WR);
    std::string got;
    EXPECT_EQ(link.server_read_all(got), Io::closed);
    EXPECT_EQ(link.server->error(), "connection closed in the middle of a TLS record");
}

TEST(RecordReader, SealedRecordsOfEveryKindAreOpened) {
    Link link;
    ASSERT_TRUE(link.handshake());
    link.raw_write(link.seal(23, "padded", 100));
    link.raw_write(link.seal(23, ""));                       // empty application data
    link.raw_write(link.seal(21, std::string("\x01\x5a", 2)));  // user_canceled: goes on
    link.raw_write(link.seal(23, "end"));
    std::string got;
    EXPECT_EQ(link.server_read_all(got), Io::want_read) << link.server->error();
    EXPECT_EQ(got, "paddedend");
}

// Each bad input ends the connection with its reason, after what came before it.
struct BadInput {
    const char* name;
    std::vector<uint8_t> (*make)(Link&);
    const char* error;
    const char* delivered = "good ";  // what the server reads before it fails
};

TEST(RecordReader, BadRecordsFailTheConnection) {
    const BadInput cases[] = {
        {"a flipped bit", [](Link& l) { auto r = l.seal(23, "data"); r[7] ^= 1; return r; }, "bad_record_mac"},
        {"a flipped tag bit", [](Link& l) { auto r = l.seal(23, "data"); r.back() ^= 0x80; return r; }, "bad_record_mac"},
        {"a replayed record", [](Link& l) { auto r = l.seal(23, "data"); r.insert(r.end(), r.begin(), r.end()); return r; },
         "bad_record_mac", "good data"},
        {"a skipped sequence number", [](Link& l) { l.seal(23, "lost"); return l.seal(23, "data"); }, "bad_record_mac"},
        {"an unprotected handshake record", [](Link&) { return std::vector<uint8_t>{22, 3, 3, 0, 20}; }, "unprotected type 22"},
        {"an unprotected alert", [](Link&) { return std::vector<uint8_t>{21, 3, 3, 0, 2, 2, 40}; }, "unprotected type 21"},
        {"a wrong version", [](Link&) { return std::vector<uint8_t>{23, 3, 1, 0, 20}; }, "version bytes 0301"},
        {"an oversized record", [](Link&) { return std::vector<uint8_t>{23, 3, 3, 0x41, 0x01}; }, "TLS record of 16641 bytes"},
        {"a record too short for its tag", [](Link&) { return std::vector<uint8_t>{23, 3, 3, 0, 16}; }, "TLS record of 16 bytes"},
        {"no content type", [](Link& l) { return l.seal(0, "", 10); }, "without a content type"},
        {"an unknown content type", [](Link& l) { return l.seal(24, "heartbeat"); }, "content type 24"},
        {"a fatal alert", [](Link& l) { return l.seal(21, std::string("\x02\x28", 2)); }, "handshake failure"},
        {"a malformed alert", [](Link& l) { return l.seal(21, "\x01"); }, "alert record of 1 bytes"},
        {"a foreign handshake message", [](Link& l) { return l.seal(22, std::string("\x04\x00\x00\x00", 4)); },
         "handshake message of type 4"},
        {"a KeyUpdate with more after it", [](Link& l) { return l.seal(22, std::string("\x18\x00\x00\x01\x00\x18", 6)); },
         "not last in its record"},
        {"a KeyUpdate asking for 2", [](Link& l) { return l.seal(22, std::string("\x18\x00\x00\x01\x02", 5)); },
         "request_update 2"},
        {"a plaintext over 2^14", [](Link& l) { return l.seal(23, std::string((1 << 14) + 1, 'x')); }, "record_overflow"},
    };
    for (const BadInput& bad : cases) {
        SCOPED_TRACE(bad.name);
        Link link;
        ASSERT_TRUE(link.handshake());
        link.raw_write(link.seal(23, "good "));
        link.raw_write(bad.make(link));
        std::string got;
        EXPECT_EQ(link.server_read_all(got), Io::failed);
        EXPECT_EQ(got, bad.delivered);
        EXPECT_NE(link.server->error().find(bad.error), std::string::npos) << link.server->error();
        // Nothing is left queued for the next OpenSSL call, on this thread's other connections.
        EXPECT_EQ(ERR_peek_error(), 0u);
    }
}

}  // namespace
