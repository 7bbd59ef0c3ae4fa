// CURVE from the environment, and the ZAP handler that makes a CURVE server refuse keys it
// does not know.
#include "zmq/curve.h"

#include "core/error.h"

#include <fmt/format.h>
#include <zmq.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

namespace mh::zmq {
namespace {

constexpr const char* k_zap_endpoint = "inproc://zeromq.zap.01";
constexpr int k_zap_poll_ms = 100;

[[noreturn]] void config_error(const std::string& what) { throw Error(ExitCode::config, what); }

bool valid_key(std::string_view key) {
    uint8_t binary[32];
    return key.size() == k_curve_key_chars && zmq_z85_decode(binary, std::string(key).c_str()) != nullptr;
}

std::string trimmed(std::string line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    return start == std::string::npos ? std::string() : line.substr(start);
}

void read_public_keys(const std::string& path, std::set<std::string>& keys) {
    std::ifstream file(path);
    if (!file) config_error(fmt::format("MH_CURVE_CLIENTS: cannot read {}", path));
    std::string line;
    while (std::getline(file, line)) {
        line = trimmed(line);
        if (line.empty() || line[0] == '#') continue;
        if (!valid_key(line)) config_error(fmt::format("MH_CURVE_CLIENTS: {} holds '{}', not a Z85 CURVE public key", path, line));
        keys.insert(line);
    }
}

// "tcp://10.0.0.6:7400" -> "10.0.0.6"; "tcp://[::1]:7400" -> "::1".
std::string host_of(std::string_view address) {
    address.remove_prefix(std::string_view("tcp://").size());
    if (size_t semicolon = address.find(';'); semicolon != std::string_view::npos)
        address.remove_prefix(semicolon + 1);  // "source;destination" syntax
    if (address.starts_with('[')) return std::string(address.substr(1, address.find(']') - 1));
    return std::string(address.substr(0, address.rfind(':')));
}

void set_option(void* socket, int option, const void* value, size_t size, const char* name) {
    if (zmq_setsockopt(socket, option, value, size) != 0)
        throw Error(ExitCode::software, fmt::format("zmq_setsockopt({}) failed: {}", name, zmq_strerror(zmq_errno())));
}

}  // namespace

std::pair<std::string, std::string> read_key_pair(const std::string& path) {
    std::ifstream file(path);
    if (!file) config_error(fmt::format("MH_CURVE_KEY: cannot read the key pair {}", path));
    std::string public_key, secret_key;
    std::getline(file, public_key);
    std::getline(file, secret_key);
    public_key = trimmed(public_key);
    secret_key = trimmed(secret_key);
    if (!valid_key(public_key) || !valid_key(secret_key))
        config_error(fmt::format("MH_CURVE_KEY: {} is not a key pair (two Z85 lines, public then secret, as "
                                 "mh-route keys writes)",
                                 path));
    return {public_key, secret_key};
}

std::optional<CurveConfig> curve_from_environment() {
    const char* key_path = std::getenv("MH_CURVE_KEY");
    if (!key_path || !*key_path) return std::nullopt;
    CurveConfig config;
    std::tie(config.public_key, config.secret_key) = read_key_pair(key_path);
    if (const char* clients = std::getenv("MH_CURVE_CLIENTS"); clients && *clients) {
        std::error_code ec;
        if (std::filesystem::is_directory(clients, ec)) {
            for (const auto& entry : std::filesystem::directory_iterator(clients, ec))
                if (entry.path().extension() == ".pub") read_public_keys(entry.path().string(), config.clients);
        } else {
            read_public_keys(clients, config.clients);
        }
    }
    if (const char* servers = std::getenv("MH_CURVE_SERVERS"); servers && *servers) {
        std::stringstream words(servers);
        std::string word;
        while (words >> word) {
            size_t equals = word.find('=');
            std::string host = word.substr(0, equals);
            std::string key = equals == std::string::npos ? "" : word.substr(equals + 1);
            if (host.empty() || !valid_key(key))
                config_error(fmt::format("MH_CURVE_SERVERS: '{}' is not HOST=KEY with a Z85 public key", word));
            config.servers[host] = key;
        }
    }
    return config;
}

void apply_curve(void* socket, const CurveConfig& config, const Attachment& attachment) {
    if (!attachment.address.starts_with("tcp://")) return;
    set_option(socket, ZMQ_CURVE_PUBLICKEY, config.public_key.c_str(), k_curve_key_chars, "ZMQ_CURVE_PUBLICKEY");
    set_option(socket, ZMQ_CURVE_SECRETKEY, config.secret_key.c_str(), k_curve_key_chars, "ZMQ_CURVE_SECRETKEY");
    if (attachment.bind) {
        if (config.clients.empty())
            config_error(fmt::format("{} would accept CURVE clients, and MH_CURVE_CLIENTS lists none: name the "
                                     "public keys that may connect",
                                     attachment.address));
        int server = 1;
        set_option(socket, ZMQ_CURVE_SERVER, &server, sizeof server, "ZMQ_CURVE_SERVER");
        // The context's ZapHandler (started with the context, before any socket) decides.
        set_option(socket, ZMQ_ZAP_DOMAIN, "mh", 2, "ZMQ_ZAP_DOMAIN");
    } else {
        std::string host = host_of(attachment.address);
        auto found = config.servers.find(host);
        if (found == config.servers.end())
            config_error(fmt::format("{}: MH_CURVE_SERVERS has no key for {}, so the server cannot be "
                                     "authenticated: add {}=KEY",
                                     attachment.address, host, host));
        set_option(socket, ZMQ_CURVE_SERVERKEY, found->second.c_str(), k_curve_key_chars, "ZMQ_CURVE_SERVERKEY");
    }
}

ZapHandler::ZapHandler(void* context, std::set<std::string> clients, Log* log)
    : m_clients(std::move(clients)), m_log(log) {
    // The socket is bound before the constructor returns, so no handshake can come first.
    void* socket = zmq_socket(context, ZMQ_REP);
    if (!socket || zmq_bind(socket, k_zap_endpoint) != 0)
        throw Error(ExitCode::software, fmt::format("cannot start the ZAP handler: {}", zmq_strerror(zmq_errno())));
    int linger = 0;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    m_thread = std::thread([this, socket] { serve(socket); });
}

ZapHandler::~ZapHandler() {
    m_stop = true;
    m_thread.join();
}

void ZapHandler::serve(void* socket) {
    while (!m_stop.load()) {
        zmq_pollitem_t item{socket, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, k_zap_poll_ms) <= 0 || !(item.revents & ZMQ_POLLIN)) continue;
        std::vector<std::string> frames;
        for (;;) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, socket, 0) < 0) {
                zmq_msg_close(&part);
                break;
            }
            frames.emplace_back(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
            bool more = zmq_msg_more(&part);
            zmq_msg_close(&part);
            if (!more) break;
        }
        // version, request id, domain, address, identity, mechanism, credentials...
        if (frames.size() < 6) continue;
        std::string status = "400", text = "refused";
        std::string client_key;
        if (frames[5] == "CURVE" && frames.size() >= 7 && frames[6].size() == 32) {
            char z85[k_curve_key_chars + 1];
            zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(frames[6].data()), 32);
            client_key = z85;
            if (m_clients.count(client_key)) status = "200", text = "OK";
        }
        if (status != "200" && m_log)
            m_log->warn("refused a {} client from {}{}: its key is not in MH_CURVE_CLIENTS", frames[5], frames[3],
                        client_key.empty() ? "" : " with key " + client_key);
        const std::string reply[] = {"1.0", frames[1], status, text, client_key, ""};
        for (size_t i = 0; i < 6; ++i)
            zmq_send(socket, reply[i].data(), reply[i].size(), i + 1 < 6 ? ZMQ_SNDMORE : 0);
    }
    zmq_close(socket);
}

}  // namespace mh::zmq
