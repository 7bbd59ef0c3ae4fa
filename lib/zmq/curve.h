// CURVE encryption and authentication for tcp attachments, configured from the environment
// so that every tool has it without options of its own (mh-route units sets these):
//
//   MH_CURVE_KEY      a key-pair file (mh-route keys): the public key on the first line,
//                     the secret key on the second, both Z85.
//   MH_CURVE_CLIENTS  a file of client public keys (one per line) or a directory of *.pub
//                     files: who may connect to the tcp inputs this process binds.
//   MH_CURVE_SERVERS  "HOST=KEY HOST=KEY ...": the public key of each server this process
//                     connects to over tcp, by the host part of the address.
//
// With MH_CURVE_KEY set, every tcp attachment is CURVE, fail closed: a bind admits only the
// listed clients (a ZAP handler refuses any other key), a connect to a host without a
// listed key is refused at start. ipc and inproc attachments are left to file permissions.
#pragma once

#include "core/log.h"
#include "zmq/endpoint.h"

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

namespace mh::zmq {

constexpr size_t k_curve_key_chars = 40;  // Z85 of 32 bytes

struct CurveConfig {
    std::string public_key, secret_key;         // Z85
    std::set<std::string> clients;              // Z85 public keys admitted by binds
    std::map<std::string, std::string> servers;  // host -> Z85 public key, for connects
};

// nullopt when MH_CURVE_KEY is not set; Error(config) when the configuration is broken.
std::optional<CurveConfig> curve_from_environment();

// Sets the CURVE options of `socket` for one tcp attachment before it binds or connects.
void apply_curve(void* socket, const CurveConfig& config, const Attachment& attachment);

// Reads "PUBLIC\nSECRET\n" from a key-pair file.
std::pair<std::string, std::string> read_key_pair(const std::string& path);

// Answers ZAP requests (RFC 27) for a context on a thread of its own: CURVE clients whose
// key is listed are admitted, every other is refused and logged.
class ZapHandler {
public:
    ZapHandler(void* context, std::set<std::string> clients, Log* log);
    ~ZapHandler();
    ZapHandler(const ZapHandler&) = delete;
    ZapHandler& operator=(const ZapHandler&) = delete;

private:
    void serve(void* socket);

    std::set<std::string> m_clients;
    Log* m_log;
    std::atomic<bool> m_stop{false};
    std::thread m_thread;
};

}  // namespace mh::zmq
