// Certificates for the TLS and endpoint tests, made by the openssl command line in a temporary
// directory: a CA, the server's certificate, gateway certificates, and a foreign CA's.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace mh::test {

class Pki {
public:
    Pki() {
        char pattern[] = "/tmp/mh-pki-test.XXXXXX";
        m_dir = mkdtemp(pattern);
        run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca "
            "-keyout ca.key -out ca.crt");
        run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=other "
            "-keyout other.key -out other.crt");
        issue("server", "ca");
        issue("gw-01", "ca");
        issue("gw-02", "ca");
        issue("stranger", "other");
    }
    ~Pki() { std::filesystem::remove_all(m_dir); }
    std::string path(const std::string& name) const { return m_dir + "/" + name; }

    // The SHA-256 fingerprint of NAME.crt in lowercase hex, as the openssl CLI computes it.
    std::string fingerprint(const std::string& name) const {
        std::string command = "openssl x509 -in " + path(name + ".crt") +
                              " -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f";
        FILE* pipe = popen(command.c_str(), "r");
        char line[128] = {};
        if (!fgets(line, sizeof(line), pipe)) line[0] = 0;
        pclose(pipe);
        std::string text = line;
        while (!text.empty() && text.back() == '\n') text.pop_back();
        return text;
    }

private:
    void run(const std::string& command) const {
        std::string line = "cd " + m_dir + " && " + command + " >/dev/null 2>&1";
        if (std::system(line.c_str()) != 0) throw std::runtime_error("failed: " + command);
    }
    void issue(const std::string& name, const std::string& ca) const {
        run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + name + " -keyout " + name +
            ".key -out " + name + ".csr");
        run("openssl x509 -req -in " + name + ".csr -CA " + ca + ".crt -CAkey " + ca +
            ".key -CAcreateserial -days 2 -out " + name + ".crt");
    }
    std::string m_dir;
};

}  // namespace mh::test
