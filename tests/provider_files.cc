#include "tests/provider_files.h"

#include <cstdlib>
#include <fstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/key_reference.h"
#include "gtest/gtest.h"
#include "service/proto_convert.h"

namespace offkey::tests {
namespace {

void Write(const std::string& path, absl::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

}  // namespace

void WriteKeylessServerFiles(const std::string& dir, const std::string& name,
                             const hsm::KeyInfo& key,
                             const service::dev::IssuedCert& ca) {
  service::dev::CertSpec spec;
  spec.common_name = name;
  spec.dns_names = {"localhost"};
  spec.server_auth = true;
  spec.public_key_spki = key.public_key_spki;
  absl::StatusOr<service::dev::IssuedCert> cert = service::dev::Issue(ca, spec);
  ASSERT_TRUE(cert.ok()) << cert.status();
  Write(absl::StrCat(dir, "/", name, ".pem"), cert->cert_pem);
  offkey::v1::KeyReference ref;
  ref.set_version(client::kKeyReferenceVersion);
  ref.set_key_id(key.key_id);
  ref.set_key_name(name);
  ref.set_public_key_spki(key.public_key_spki);
  ref.set_algorithm(service::ToProtoAlgorithm(key.algorithm));
  absl::StatusOr<std::string> pem = client::EncodeKeyReference(ref);
  ASSERT_TRUE(pem.ok()) << pem.status();
  Write(absl::StrCat(dir, "/", name, ".ref"), *pem);
}

std::string ProviderConfig(absl::string_view offkey_lines, bool offkey_first) {
  const std::string offkey_section = "offkey = offkey_sect\n";
  const std::string default_section = "default = default_sect\n";
  return absl::StrCat(
      "openssl_conf = openssl_init\n"
      "[openssl_init]\n"
      "providers = provider_sect\n"
      "alg_section = evp_properties\n"
      "[provider_sect]\n",
      offkey_first ? offkey_section + default_section : default_section + offkey_section,
      "[default_sect]\n"
      "activate = 1\n"
      "[offkey_sect]\n"
      "module = ",
      getenv("TEST_SRCDIR"), "/offkey/client/openssl/offkey.so\n", "activate = 1\n",
      offkey_lines,
      "[evp_properties]\n"
      "default_properties = ?provider=default\n");
}

std::string TlsFileLines(const client::ClientOptions& files) {
  return absl::StrCat("tls_ca_file = ", files.ca_file, "\n",
                      "tls_cert_file = ", files.cert_file, "\n",
                      "tls_key_file = ", files.key_file, "\n");
}

std::string EndpointLines(int port, const client::ClientOptions& files) {
  return absl::StrCat("endpoint = 127.0.0.1:", port, "\n", TlsFileLines(files));
}

}  // namespace offkey::tests
