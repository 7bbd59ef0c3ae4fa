// Token keys, tokens and a development CA with gateway and server certificates, through the
// OpenSSL 3 API (no shelling out to openssl).
#include "gateway/provision.h"

#include "core/error.h"
#include "gateway/token.h"

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace mh::gateway {
namespace {

constexpr size_t k_serial_bytes = 16;
constexpr size_t k_max_common_name_bytes = 64;  // ub-common-name in X.509
constexpr mode_t k_key_file_mode = 0600;
constexpr mode_t k_cert_file_mode = 0644;
constexpr mode_t k_ca_dir_mode = 0700;
constexpr mode_t k_out_dir_mode = 0755;

struct FreeKey {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct FreeCert {
    void operator()(X509* cert) const { X509_free(cert); }
};
struct FreeBio {
    void operator()(BIO* bio) const { BIO_free(bio); }
};
struct FreeBignum {
    void operator()(BIGNUM* bn) const { BN_free(bn); }
};
struct FreeExtension {
    void operator()(X509_EXTENSION* ext) const { X509_EXTENSION_free(ext); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, FreeKey>;
using CertPtr = std::unique_ptr<X509, FreeCert>;
using BioPtr = std::unique_ptr<BIO, FreeBio>;

// The OpenSSL error queue as one line (and emptied).
std::string openssl_reason() {
    std::string text;
    while (unsigned long code = ERR_get_error()) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof(buffer));
        if (!text.empty()) text += "; ";
        text += buffer;
    }
    return text.empty() ? "unknown OpenSSL error" : text;
}

[[noreturn]] void fail_openssl(const char* what) {
    throw Error(ExitCode::software, fmt::format("{} failed: {}", what, openssl_reason()));
}

std::string join(const std::string& dir, std::string_view name) {
    if (dir.empty() || dir.back() == '/') return dir + std::string(name);
    return dir + "/" + std::string(name);
}

void make_directory(const std::string& dir, mode_t mode) {
    // Parents first, as mkdir -p.
    for (size_t slash = dir.find('/', 1); slash != std::string::npos; slash = dir.find('/', slash + 1))
        if (::mkdir(dir.substr(0, slash).c_str(), k_out_dir_mode) != 0 && errno != EEXIST)
            throw Error(ExitCode::io, fmt::format("cannot create directory {}: {}", dir.substr(0, slash),
                                                  errno_text("mkdir", errno)));
    if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST)
        throw Error(ExitCode::io, fmt::format("cannot create directory {}: {}", dir, errno_text("mkdir", errno)));
}

// Fails when either file exists, before anything is written: a half-made pair would be worse.
void refuse_existing(const std::string& cert_file, const std::string& key_file) {
    for (const std::string& file : {cert_file, key_file}) {
        struct stat st;
        if (::stat(file.c_str(), &st) == 0)
            throw Error(ExitCode::io,
                        fmt::format("{} exists; it is not overwritten (remove it, or choose another directory)", file));
    }
}

// Writes what `bio` holds to a new file with `mode`.
void write_new_file(const std::string& path, BIO* bio, mode_t mode) {
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) throw Error(ExitCode::io, fmt::format("cannot create {}: {}", path, errno_text("open", errno)));
    long written = 0;
    while (written < size) {
        ssize_t n = ::write(fd, data + written, size - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = errno;
            ::close(fd);
            throw Error(ExitCode::io, fmt::format("cannot write {}: {}", path, errno_text("write", err)));
        }
        written += n;
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0)
        throw Error(ExitCode::io, fmt::format("cannot write {}: {}", path, errno_text("fsync/close", errno)));
}

KeyPtr generate_key() {
    KeyPtr key(EVP_EC_gen("P-256"));
    if (!key) fail_openssl("EVP_EC_gen(P-256)");
    return key;
}

void write_key(const std::string& path, EVP_PKEY* key) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || !PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
        fail_openssl("PEM_write_bio_PrivateKey");
    write_new_file(path, bio.get(), k_key_file_mode);
}

void write_cert(const std::string& path, X509* cert) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || !PEM_write_bio_X509(bio.get(), cert)) fail_openssl("PEM_write_bio_X509");
    write_new_file(path, bio.get(), k_cert_file_mode);
}

BioPtr open_read(const std::string& path) {
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio)
        throw Error(ExitCode::io, fmt::format("cannot read {}: {} (make a CA with `mh-endpoint ca --dir DIR`)", path,
                                              openssl_reason()));
    return bio;
}

struct Authority {
    CertPtr cert;
    KeyPtr key;
};

Authority load_ca(const std::string& dir) {
    Authority ca;
    std::string cert_file = join(dir, k_ca_cert_file);
    std::string key_file = join(dir, k_ca_key_file);
    ca.cert.reset(PEM_read_bio_X509(open_read(cert_file).get(), nullptr, nullptr, nullptr));
    if (!ca.cert) throw Error(ExitCode::config, fmt::format("{} is not a PEM certificate: {}", cert_file, openssl_reason()));
    ca.key.reset(PEM_read_bio_PrivateKey(open_read(key_file).get(), nullptr, nullptr, nullptr));
    if (!ca.key) throw Error(ExitCode::config, fmt::format("{} is not a PEM private key: {}", key_file, openssl_reason()));
    if (X509_check_private_key(ca.cert.get(), ca.key.get()) != 1)
        throw Error(ExitCode::config, fmt::format("{} is not the key of {}", key_file, cert_file));
    return ca;
}

void add_extension(X509* cert, X509V3_CTX& context, int nid, const char* value) {
    std::unique_ptr<X509_EXTENSION, FreeExtension> ext(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
    if (!ext || !X509_add_ext(cert, ext.get(), -1)) fail_openssl(fmt::format("extension {}={}", OBJ_nid2sn(nid), value).c_str());
}

// A certificate for `key` named `common_name`, valid as `validity` says, not yet signed.
CertPtr new_certificate(EVP_PKEY* key, std::string_view common_name, const Validity& validity) {
    if (validity.days <= 0) throw Error(ExitCode::usage, "the validity must be at least one day");
    if (validity.backdate_s < 0) throw Error(ExitCode::usage, "the backdating must not be negative");
    CertPtr cert(X509_new());
    if (!cert || !X509_set_version(cert.get(), 2)) fail_openssl("X509_new");

    // A random positive serial: no serial database to keep for a development CA.
    unsigned char serial[k_serial_bytes];
    if (RAND_bytes(serial, sizeof(serial)) != 1) fail_openssl("RAND_bytes");
    serial[0] &= 0x7f;
    std::unique_ptr<BIGNUM, FreeBignum> bn(BN_bin2bn(serial, sizeof(serial), nullptr));
    if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()))) fail_openssl("serial number");

    if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -validity.backdate_s) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert.get()), validity.days * k_seconds_per_day - validity.backdate_s))
        fail_openssl("X509_gmtime_adj");

    X509_NAME* name = X509_get_subject_name(cert.get());
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    reinterpret_cast<const unsigned char*>(common_name.data()),
                                    static_cast<int>(common_name.size()), -1, 0))
        fail_openssl("X509_NAME_add_entry_by_txt(CN)");
    if (!X509_set_pubkey(cert.get(), key)) fail_openssl("X509_set_pubkey");
    return cert;
}

void sign(X509* cert, EVP_PKEY* key) {
    if (!X509_sign(cert, key, EVP_sha256())) fail_openssl("X509_sign");
}

// A leaf certificate signed by `ca`, with the extensions of its use.
Issued issue_leaf(const Authority& ca, std::string_view common_name, const std::string& extended_key_usage,
                  const std::string& subject_alt_names, const std::string& cert_file, const std::string& key_file,
                  const Validity& validity) {
    KeyPtr key = generate_key();
    CertPtr cert = new_certificate(key.get(), common_name, validity);
    if (!X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.cert.get()))) fail_openssl("X509_set_issuer_name");

    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, ca.cert.get(), cert.get(), nullptr, nullptr, 0);
    add_extension(cert.get(), context, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), context, NID_key_usage, "critical,digitalSignature");
    add_extension(cert.get(), context, NID_ext_key_usage, extended_key_usage.c_str());
    add_extension(cert.get(), context, NID_subject_key_identifier, "hash");
    add_extension(cert.get(), context, NID_authority_key_identifier, "keyid:always");
    if (!subject_alt_names.empty())
        add_extension(cert.get(), context, NID_subject_alt_name, subject_alt_names.c_str());
    sign(cert.get(), ca.key.get());

    write_key(key_file, key.get());
    write_cert(cert_file, cert.get());
    return {cert_file, key_file, certificate_sha256(cert.get())};
}

bool is_ip_literal(const std::string& host) {
    unsigned char address[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host.c_str(), address) == 1 || inet_pton(AF_INET6, host.c_str(), address) == 1;
}

// DNS names as certificates carry them: letters, digits, '-', '.', and a leading "*." wildcard.
// Checked here because the SAN text is parsed by OpenSSL, where ',' or ':' would add entries.
bool is_dns_name(const std::string& host) {
    std::string_view name = host;
    if (name.starts_with("*.")) name.remove_prefix(2);
    if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return false;
    return name.find("..") == std::string_view::npos;
}

}  // namespace

std::string generate_token_key_hex() {
    uint8_t key[k_token_key_bytes];
    if (RAND_bytes(key, sizeof(key)) != 1) fail_openssl("RAND_bytes");
    return to_hex(key);
}

std::string make_token(const Registry& registry, std::string_view gateway_id, int64_t expiry_unix_s) {
    const Gateway* gateway = registry.find(gateway_id);
    if (!gateway) throw Error(ExitCode::config, fmt::format("no gateway '{}' in the registry", gateway_id));
    if (gateway->token_key.empty())
        throw Error(ExitCode::config, fmt::format("gateway '{}' has no token_key in the registry (add one made by "
                                                  "`mh-endpoint keygen`)",
                                                  gateway_id));
    return issue_token(gateway->token_key, gateway->id, expiry_unix_s);
}

Issued make_ca(const std::string& dir, const std::string& name, const Validity& validity) {
    if (name.empty() || name.size() > k_max_common_name_bytes)
        throw Error(ExitCode::usage, fmt::format("the CA name must be 1 to {} bytes", k_max_common_name_bytes));
    std::string cert_file = join(dir, k_ca_cert_file);
    std::string key_file = join(dir, k_ca_key_file);
    make_directory(dir, k_ca_dir_mode);
    refuse_existing(cert_file, key_file);

    KeyPtr key = generate_key();
    CertPtr cert = new_certificate(key.get(), name, validity);
    if (!X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()))) fail_openssl("X509_set_issuer_name");
    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, cert.get(), cert.get(), nullptr, nullptr, 0);
    add_extension(cert.get(), context, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    add_extension(cert.get(), context, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_extension(cert.get(), context, NID_subject_key_identifier, "hash");
    sign(cert.get(), key.get());

    write_key(key_file, key.get());
    write_cert(cert_file, cert.get());
    return {cert_file, key_file, certificate_sha256(cert.get())};
}

Issued make_gateway_cert(const std::string& ca_dir, std::string_view gateway, const std::string& out_dir,
                         const Validity& validity) {
    if (auto reason = check_gateway_id(gateway))
        throw Error(ExitCode::usage, fmt::format("bad gateway id '{}': {}", gateway, *reason));
    if (gateway.size() > k_max_common_name_bytes)
        throw Error(ExitCode::usage, fmt::format("gateway id '{}' is longer than the {} bytes a certificate's CN "
                                                 "may hold; give this gateway a token instead",
                                                 gateway, k_max_common_name_bytes));
    Authority ca = load_ca(ca_dir);
    std::string cert_file = join(out_dir, std::string(gateway) + ".crt");
    std::string key_file = join(out_dir, std::string(gateway) + ".key");
    make_directory(out_dir, k_out_dir_mode);
    refuse_existing(cert_file, key_file);
    return issue_leaf(ca, gateway, "clientAuth", "", cert_file, key_file, validity);
}

Issued make_server_cert(const std::string& ca_dir, const std::vector<std::string>& hosts, const std::string& out_dir,
                        const Validity& validity) {
    if (hosts.empty()) throw Error(ExitCode::usage, "a server certificate needs at least one host name");
    std::string alt_names;
    for (const std::string& host : hosts) {
        if (!alt_names.empty()) alt_names += ',';
        if (is_ip_literal(host)) alt_names += "IP:" + host;
        else if (is_dns_name(host)) alt_names += "DNS:" + host;
        else throw Error(ExitCode::usage, fmt::format("'{}' is neither a DNS name nor an IP address", host));
    }
    if (hosts.front().size() > k_max_common_name_bytes)
        throw Error(ExitCode::usage, fmt::format("the first host '{}' is longer than a CN may be ({} bytes)",
                                                 hosts.front(), k_max_common_name_bytes));
    Authority ca = load_ca(ca_dir);
    std::string cert_file = join(out_dir, std::string(k_server_base_name) + ".crt");
    std::string key_file = join(out_dir, std::string(k_server_base_name) + ".key");
    make_directory(out_dir, k_out_dir_mode);
    refuse_existing(cert_file, key_file);
    return issue_leaf(ca, hosts.front(), "serverAuth", alt_names, cert_file, key_file, validity);
}

}  // namespace mh::gateway
