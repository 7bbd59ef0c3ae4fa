// mqtt_publish: publishes each line of a file as one QoS 0 message, as fast as the broker
// takes them, for bench/stream.sh (mosquitto_pub -l waits on itself and tops out far lower).
//   mqtt_publish PORT TOPIC FILE
#include <mosquitto.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: mqtt_publish PORT TOPIC FILE\n");
        return 64;
    }
    std::vector<std::string> lines;
    std::ifstream in(argv[3]);
    for (std::string line; std::getline(in, line);) lines.push_back(line);

    mosquitto_lib_init();
    mosquitto* client = mosquitto_new(nullptr, true, nullptr);
    if (!client || mosquitto_connect(client, "127.0.0.1", std::stoi(argv[1]), 60) != MOSQ_ERR_SUCCESS) {
        std::fprintf(stderr, "mqtt_publish: cannot connect to 127.0.0.1:%s\n", argv[1]);
        return 69;
    }
    for (size_t i = 0; i < lines.size(); ++i) {
        const auto& line = lines[i];
        if (mosquitto_publish(client, nullptr, argv[2], static_cast<int>(line.size()), line.data(), 0, false) !=
            MOSQ_ERR_SUCCESS) {
            std::fprintf(stderr, "mqtt_publish: publish failed\n");
            return 74;
        }
        // Publishing writes at once when the socket takes it; drain what it did not take.
        if (i % 256 == 0)
            while (mosquitto_want_write(client)) mosquitto_loop(client, 10, 1);
    }
    while (mosquitto_want_write(client)) mosquitto_loop(client, 10, 1);
    mosquitto_disconnect(client);
    mosquitto_loop(client, 10, 1);
    mosquitto_destroy(client);
    mosquitto_lib_cleanup();
    return 0;
}
