#include "stream/mqtt_source.h"

#include "core/error.h"
#include "message/time.h"
#include "stream/log_sparingly.h"

#include <mosquitto.h>

#include <charconv>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

namespace mh::stream {

std::variant<BrokerAddress, std::string> parse_broker_url(std::string_view url) {
    BrokerAddress address;
    if (url.starts_with("mqtt://")) {
        url.remove_prefix(7);
        address.port = k_mqtt_port;
    } else if (url.starts_with("mqtts://")) {
        url.remove_prefix(8);
        address.tls = true;
        address.port = k_mqtts_port;
    } else {
        return std::string("expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]");
    }
    if (!url.empty() && url.back() == '/') url.remove_suffix(1);
    std::string_view port_text;
    if (url.starts_with('[')) {
        size_t close = url.find(']');
        if (close == std::string_view::npos) return std::string("unclosed [ in the host");
        address.host = std::string(url.substr(1, close - 1));
        std::string_view rest = url.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':') return std::string("expected :PORT after ]");
            port_text = rest.substr(1);
        }
    } else {
        size_t colon = url.rfind(':');
        address.host = std::string(url.substr(0, colon));
        if (colon != std::string_view::npos) port_text = url.substr(colon + 1);
    }
    if (address.host.empty()) return std::string("no host");
    if (address.host.find_first_of("/@?#") != std::string::npos) return std::string("a path or user in the URL is not supported");
    if (!port_text.empty() || url.ends_with(':')) {
        int port = 0;
        auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
        if (error != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535)
            return std::string("the port must be 1 to 65535");
        address.port = port;
    }
    return address;
}

std::string_view topic_level(std::string_view topic, unsigned index) {
    for (unsigned i = 0; i < index; ++i) {
        size_t slash = topic.find('/');
        if (slash == std::string_view::npos) return {};
        topic.remove_prefix(slash + 1);
    }
    return topic.substr(0, topic.find('/'));
}

namespace {

MqttSource& self(void* userdata) { return *static_cast<MqttSource*>(userdata); }

std::string mosquitto_error(int rc) {
    if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
    std::string text = mosquitto_strerror(rc);  // a sentence: "The connection was lost."
    if (!text.empty() && text.back() == '.') text.pop_back();
    return text;
}

uint64_t random_seed() {
    std::random_device device;
    return (uint64_t{device()} << 32) ^ device();
}

void check(int rc, const char* what) {
    if (rc != MOSQ_ERR_SUCCESS) throw Error(ExitCode::config, fmt::format("{}: {}", what, mosquitto_error(rc)));
}

}  // namespace

MqttSource::MqttSource(const MqttOptions& options, const ingest::MappingOptions& mapping, const StopFlag* stop,
                       Log& log, wire::FrameLimits limits)
    : m_options(options), m_stop(stop), m_log(log), m_limits(limits), m_mapper(mapping, random_seed()) {
    auto parsed = parse_broker_url(options.broker);
    if (auto* error = std::get_if<std::string>(&parsed))
        throw Error(ExitCode::usage, fmt::format("--broker '{}': {}", options.broker, *error));
    m_address = std::get<BrokerAddress>(parsed);
    if (options.topics.empty()) throw Error(ExitCode::usage, "--topic: at least one topic filter is needed");
    for (const auto& topic : options.topics)
        if (mosquitto_sub_topic_check(topic.c_str()) != MOSQ_ERR_SUCCESS)
            throw Error(ExitCode::usage, fmt::format("--topic '{}': not a valid MQTT topic filter", topic));
    if (!m_address.tls && (!options.cafile.empty() || !options.cert.empty()))
        throw Error(ExitCode::usage, "--cafile and --cert need an mqtts:// broker");
    if (options.cert.empty() != options.key.empty())
        throw Error(ExitCode::usage, "--cert and --key go together");

    static std::once_flag once;
    std::call_once(once, [] { mosquitto_lib_init(); });

    // Without a client id the session is clean (a random id); a named client resumes its
    // session, so the broker keeps QoS 1 messages for it while it is away.
    const char* id = options.client_id.empty() ? nullptr : options.client_id.c_str();
    m_client = mosquitto_new(id, id == nullptr, this);
    if (!m_client) throw Error(ExitCode::software, fmt::format("mosquitto_new: {}", std::strerror(errno)));
    mosquitto_int_option(m_client, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(m_client, [](mosquitto*, void* me, int rc) { self(me).on_connect(rc); });
    mosquitto_disconnect_callback_set(m_client, [](mosquitto*, void* me, int rc) { self(me).on_disconnect(rc); });
    mosquitto_subscribe_callback_set(m_client, [](mosquitto*, void* me, int mid, int count, const int* granted) {
        self(me).on_subscribe(mid, count, granted);
    });
    mosquitto_message_callback_set(m_client, [](mosquitto*, void* me, const mosquitto_message* message) {
        self(me).on_message(message);
    });
    if (!options.username.empty())
        check(mosquitto_username_pw_set(m_client, options.username.c_str(),
                                        options.password.empty() ? nullptr : options.password.c_str()),
              "--username");
    if (m_address.tls) {
        const char* cafile = options.cafile.empty() ? nullptr : options.cafile.c_str();
        // Without --cafile, the system's trusted certificates (Debian's ca-certificates).
        const char* capath = cafile ? nullptr : "/etc/ssl/certs";
        const char* cert = options.cert.empty() ? nullptr : options.cert.c_str();
        const char* key = options.key.empty() ? nullptr : options.key.c_str();
        int rc = mosquitto_tls_set(m_client, cafile, capath, cert, key, nullptr);
        if (rc != MOSQ_ERR_SUCCESS)
            throw Error(ExitCode::config,
                        fmt::format("TLS setup failed ({}): check that --cafile, --cert and --key are readable PEM files",
                                    mosquitto_error(rc)));
    }
}

MqttSource::~MqttSource() {
    if (m_client) {
        if (m_connected) mosquitto_disconnect(m_client);
        mosquitto_destroy(m_client);
    }
}

bool MqttSource::try_connect() {
    int rc = mosquitto_connect(m_client, m_address.host.c_str(), m_address.port, m_options.keepalive_s);
    if (rc == MOSQ_ERR_SUCCESS) {
        m_connected = true;
        return true;
    }
    ++m_failed_attempts;
    if (log_sparingly(m_failed_attempts))
        m_log.warn("cannot connect to {}: {}; retrying in {} ms ({} failed attempts)", m_options.broker,
                   mosquitto_error(rc), m_backoff.count(), m_failed_attempts);
    m_next_attempt = std::chrono::steady_clock::now() + m_backoff;
    m_backoff = std::min<std::chrono::milliseconds>(m_backoff * 2, k_reconnect_max);
    return false;
}

void MqttSource::connection_lost(int rc) {
    if (m_connected) {
        m_log.warn("connection to {} lost: {}; reconnecting in {} ms", m_options.broker, mosquitto_error(rc),
                   m_backoff.count());
        mosquitto_disconnect(m_client);
    }
    m_connected = false;
    m_pending_subscriptions.clear();
    m_next_attempt = std::chrono::steady_clock::now() + m_backoff;
    m_backoff = std::min<std::chrono::milliseconds>(m_backoff * 2, k_reconnect_max);
}

void MqttSource::on_connect(int rc) {
    if (rc != 0) {
        // 2 (client id rejected), 4 (bad user name or password) and 5 (not authorized) will
        // not change by retrying; 1 and 3 (broker unavailable) may.
        std::string text = mosquitto_connack_string(rc);
        if (rc == 2 || rc == 4 || rc == 5) {
            m_fatal = fmt::format("{} refused the connection: {}; check --client-id, --username/--password or "
                                  "--cert", m_options.broker, text);
        } else {
            m_log.warn("{} refused the connection: {}", m_options.broker, text);
        }
        return;
    }
    ++m_connects;
    m_failed_attempts = 0;
    m_backoff = k_reconnect_min;
    m_log.info("connected to {}", m_options.broker);
    for (const auto& topic : m_options.topics) {
        int mid = 0;
        int sub_rc = mosquitto_subscribe(m_client, &mid, topic.c_str(), m_options.qos);
        if (sub_rc != MOSQ_ERR_SUCCESS) {
            m_log.warn("subscribing to '{}' failed: {}", topic, mosquitto_error(sub_rc));
            continue;
        }
        m_pending_subscriptions[mid] = topic;
    }
}

void MqttSource::on_disconnect(int rc) {
    if (rc != 0) m_log.debug("disconnected from {} ({})", m_options.broker, rc);
}

void MqttSource::on_subscribe(int mid, int count, const int* granted) {
    auto it = m_pending_subscriptions.find(mid);
    std::string topic = it == m_pending_subscriptions.end() ? "?" : it->second;
    if (it != m_pending_subscriptions.end()) m_pending_subscriptions.erase(it);
    for (int i = 0; i < count; ++i) {
        if (granted[i] > 2) {
            m_fatal = fmt::format("{} refused the subscription to '{}' (not authorized?)", m_options.broker, topic);
            return;
        }
        m_log.info("subscribed to '{}' (qos {})", topic, granted[i]);
    }
}

void MqttSource::on_message(const mosquitto_message* message) {
    std::vector<std::byte> buffer;
    if (!m_spare.empty()) {
        buffer = std::move(m_spare.back());
        m_spare.pop_back();
    }
    buffer.clear();
    std::string_view topic = message->topic ? message->topic : "";
    ingest::RecordHints hints;
    if (m_options.source_level) hints.source = topic_level(topic, *m_options.source_level);
    if (m_options.kind_level) hints.kind = topic_level(topic, *m_options.kind_level);
    std::string_view payload(static_cast<const char*>(message->payload), static_cast<size_t>(message->payloadlen));
    if (auto reason = m_mapper.map(payload, hints, wall_clock_ns(), buffer, m_limits.max_frame_bytes)) {
        ++m_rejected;
        if (log_sparingly(m_rejected))
            m_log.warn("topic '{}': {} ({} rejected so far)", topic, *reason, m_rejected);
        m_spare.push_back(std::move(buffer));
        return;
    }
    m_ready.push_back(std::move(buffer));
}

void MqttSource::wait_for_retry(wire::Wait wait) {
    if (wait == wire::Wait::no) return;
    constexpr auto k_slice = std::chrono::milliseconds(100);  // how soon a stop is noticed
    auto left = m_next_attempt - std::chrono::steady_clock::now();
    if (left > k_slice) left = k_slice;
    if (left > std::chrono::steady_clock::duration::zero()) std::this_thread::sleep_for(left);
}

wire::Next MqttSource::next(wire::Wait wait, wire::Frame& frame) {
    constexpr int k_poll_ms = 100;  // how soon a stop is noticed while the broker is quiet
    for (;;) {
        if (!m_ready.empty()) {
            m_spare.push_back(std::move(m_current));
            m_current = std::move(m_ready.front());
            m_ready.pop_front();
            // operator new aligns at least as strictly as a Cap'n Proto word.
            frame.words = reinterpret_cast<const capnp::word*>(m_current.data());
            frame.word_count = m_current.size() / sizeof(capnp::word);
            return wire::Next::frame;
        }
        if (m_fatal) throw Error(ExitCode::config, *m_fatal);
        if (m_stop && m_stop->load()) return wire::Next::end;
        if (!m_connected) {
            if (std::chrono::steady_clock::now() >= m_next_attempt && try_connect()) continue;
            if (wait == wire::Wait::no) return wire::Next::idle;
            wait_for_retry(wait);
            continue;
        }
        if (wait == wire::Wait::no) {
            // Read what is there without waiting: one packet per call, so a busy stream is
            // handed out as it arrives and the pump batches its writes.
            int rc = mosquitto_loop_read(m_client, 1);
            if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(m_client)) rc = mosquitto_loop_write(m_client, 1);
            if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(m_client);  // keepalive pings
            if (rc != MOSQ_ERR_SUCCESS) {
                connection_lost(rc);
                continue;
            }
            if (m_ready.empty()) return wire::Next::idle;
            continue;
        }
        int rc = mosquitto_loop(m_client, k_poll_ms, 1);
        if (rc != MOSQ_ERR_SUCCESS) connection_lost(rc);
    }
}

}  // namespace mh::stream
