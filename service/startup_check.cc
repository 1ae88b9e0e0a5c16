#include "service/startup_check.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/secret_bytes.h"
#include "openssl/crypto.h"
#include "openssl/x509.h"
#include "service/clientverify/client_verifier.h"
#include "service/config/policy.h"

namespace offkey::service {
namespace {

// PEM files this check reads are certificates and keys: far below this.
constexpr std::streamsize kMaxFileBytes = 1 << 20;

// The contents of `path`, or a problem naming `field` and the path.
absl::Status ReadSmallFile(const std::string& field, const std::string& path,
                           std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(field, ": cannot read '", path, "'"));
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad() || static_cast<std::streamsize>(out->size()) > kMaxFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", path, "' cannot be read or is over 1 MiB"));
  }
  return absl::OkStatus();
}

void CheckTls(const offkey::v1::TlsConfig& tls, std::vector<std::string>* problems) {
  std::string text;
  std::vector<X509Ptr> chain;
  if (absl::Status read = ReadSmallFile("tls.cert_file", tls.cert_file(), &text);
      !read.ok()) {
    problems->push_back(std::string(read.message()));
  } else if (absl::StatusOr<std::vector<X509Ptr>> certs = ReadPemCertificates(text);
             !certs.ok()) {
    problems->push_back(absl::StrCat("tls.cert_file: '", tls.cert_file(),
                                     "': ", certs.status().message()));
  } else {
    chain = *std::move(certs);
  }

  std::string key_text;
  absl::Status read_key = ReadSmallFile("tls.key_file", tls.key_file(), &key_text);
  absl::StatusOr<SecretBytes> der =
      read_key.ok() ? ReadPemPrivateKey(key_text) : absl::StatusOr<SecretBytes>(read_key);
  OPENSSL_cleanse(key_text.data(), key_text.size());
  if (!read_key.ok()) {
    problems->push_back(std::string(read_key.message()));
  } else if (!der.ok()) {
    problems->push_back(
        absl::StrCat("tls.key_file: '", tls.key_file(), "': ", der.status().message()));
  } else if (absl::StatusOr<EvpPkeyPtr> key = ParsePkcs8PrivateKey(*der); !key.ok()) {
    problems->push_back(
        absl::StrCat("tls.key_file: '", tls.key_file(), "': ", key.status().message()));
  } else if (!chain.empty()) {
    EVP_PKEY* cert_key = X509_get0_pubkey(chain.front().get());
    if (cert_key == nullptr || SpkiDer(cert_key) != SpkiDer(key->get())) {
      problems->push_back(absl::StrCat("tls.key_file: '", tls.key_file(),
                                       "' is not the key of the first certificate in '",
                                       tls.cert_file(), "'"));
    }
  }

  if (absl::Status read =
          ReadSmallFile("tls.client_ca_file", tls.client_ca_file(), &text);
      !read.ok()) {
    problems->push_back(std::string(read.message()));
  } else if (absl::StatusOr<std::vector<X509Ptr>> cas = ReadPemCertificates(text);
             !cas.ok()) {
    problems->push_back(absl::StrCat("tls.client_ca_file: '", tls.client_ca_file(),
                                     "': ", cas.status().message()));
  }
}

void CheckHsm(const offkey::v1::HsmConfig& hsm, std::vector<std::string>* problems) {
  struct stat st;
  if (stat(hsm.module_path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      access(hsm.module_path().c_str(), R_OK) != 0) {
    problems->push_back(absl::StrCat("hsm.module_path: '", hsm.module_path(),
                                     "' is not a readable file"));
  }
  if (!hsm.pin_file().empty()) {
    if (stat(hsm.pin_file().c_str(), &st) != 0 ||
        access(hsm.pin_file().c_str(), R_OK) != 0) {
      problems->push_back(
          absl::StrCat("hsm.pin_file: cannot read '", hsm.pin_file(), "'"));
    } else if (st.st_size == 0) {
      problems->push_back(absl::StrCat("hsm.pin_file: '", hsm.pin_file(), "' is empty"));
    }
  } else if (!hsm.pin_env().empty()) {
    const char* value = getenv(hsm.pin_env().c_str());
    if (value == nullptr || *value == '\0') {
      problems->push_back(absl::StrCat("hsm.pin_env: the environment variable '",
                                       hsm.pin_env(), "' is not set or empty"));
    }
  }
}

void CheckAudit(const offkey::v1::AuditConfig& audit,
                std::vector<std::string>* problems) {
  const std::string& path = audit.path();
  if (path.empty() || path == "-") return;  // Standard output.
  if (access(path.c_str(), F_OK) == 0) {
    if (access(path.c_str(), W_OK) != 0) {
      problems->push_back(absl::StrCat("audit.path: cannot append to '", path, "'"));
    }
    return;
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    problems->push_back(absl::StrCat("audit.path: cannot create '", path,
                                     "' (directory '", dir,
                                     "' is missing or not writable)"));
  }
}

}  // namespace

std::vector<std::string> CheckStartupResources(const offkey::v1::ServerConfig& config) {
  std::vector<std::string> problems;
  if (absl::StatusOr<config::Policy> policy =
          config::Policy::Create(config.policy(), config.admin_identities());
      !policy.ok()) {
    problems.push_back(std::string(policy.status().message()));
  }
  if (absl::StatusOr<std::shared_ptr<const clientverify::TrustStore>> trust =
          clientverify::TrustStore::Load(config.trust_bundles());
      !trust.ok()) {
    problems.push_back(std::string(trust.status().message()));
  }
  if (!config.insecure_plaintext_for_development()) CheckTls(config.tls(), &problems);
  CheckHsm(config.hsm(), &problems);
  CheckAudit(config.audit(), &problems);
  return problems;
}

}  // namespace offkey::service
