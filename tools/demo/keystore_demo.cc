// keystore_demo: the quickstart's tour of the key store on a real SoftHSM2 token.
//
// Creates (first run) or reuses a token under --state_dir, makes one key of each kind
// inside it, signs a message with every scheme the key supports and verifies each
// signature with OpenSSL against the exported public key. Private keys never leave the
// token; the demo only ever holds public keys and signatures.
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/token_init.h"
#include "hsm/testing/verify.h"

namespace offkey {
namespace {

using hsm::HashAlgorithm;
using hsm::KeyAlgorithm;
using hsm::SignatureKind;

constexpr char kModule[] = "/usr/lib/softhsm/libsofthsm2.so";
constexpr char kTokenLabel[] = "offkey-demo";

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// A random development PIN in printable hex.
SecretBytes RandomPin() {
  unsigned char raw[12];
  RAND_bytes(raw, sizeof(raw));
  SecretBytes pin(absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(raw), sizeof(raw))));
  OPENSSL_cleanse(raw, sizeof(raw));
  return pin;
}

// Writes a SoftHSM2 configuration and initialises the demo token once. The PIN goes to
// a 0600 file and to the module in memory, never onto a command line.
bool PrepareToken(const std::string& dir, std::string* pin_file) {
  std::string tokens = dir + "/tokens";
  std::string conf = dir + "/softhsm2.conf";
  *pin_file = dir + "/user.pin";
  std::error_code ec;
  std::filesystem::create_directories(tokens, ec);
  if (ec) {
    fprintf(stderr, "cannot create %s: %s\n", tokens.c_str(), ec.message().c_str());
    return false;
  }
  std::ofstream(conf) << "directories.tokendir = " << tokens
                      << "\nobjectstore.backend = file\nlog.level = ERROR\n";
  setenv("SOFTHSM2_CONF", conf.c_str(), 1);
  if (Exists(*pin_file)) return true;
  SecretBytes pin = RandomPin();
  absl::Status made =
      hsm::pkcs11::InitializeToken(kModule, kTokenLabel, RandomPin(), pin);
  if (!made.ok()) {
    fprintf(stderr, "cannot create the demo token: %s\n", made.ToString().c_str());
    return false;
  }
  umask(077);
  std::ofstream(*pin_file) << pin.view() << "\n";
  printf("created SoftHSM2 token '%s' in %s\n", kTokenLabel, tokens.c_str());
  return true;
}

int Main(int argc, char** argv) {
  std::string state_dir = ".offkey/demo";
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--state_dir=")) {
      state_dir = std::string(arg);
    } else {
      fprintf(
          stderr,
          "usage: keystore_demo [--state_dir=DIR]\n"
          "  Creates or reuses a SoftHSM2 token in DIR (default .offkey/demo), makes\n"
          "  RSA, EC and Ed25519 keys inside it, signs and verifies with OpenSSL.\n");
      return 2;
    }
  }
  std::string pin_file;
  if (!PrepareToken(state_dir, &pin_file)) return 1;

  hsm::pkcs11::TokenOptions options;
  options.module_path = kModule;
  options.uri = absl::StrCat("pkcs11:token=", kTokenLabel);
  options.pin.file = pin_file;
  auto store = hsm::pkcs11::Pkcs11KeyStore::Create(options);
  if (!store.ok()) {
    fprintf(stderr, "cannot open the token: %s\n", store.status().ToString().c_str());
    return 1;
  }

  struct Demo {
    const char* name;
    KeyAlgorithm algorithm;
    hsm::SignAlgorithm scheme;
    const char* scheme_name;
  };
  const Demo demos[] = {
      {"demo-rsa",
       KeyAlgorithm::kRsa2048,
       {SignatureKind::kRsaPss, HashAlgorithm::kSha256},
       "rsa_pss_rsae_sha256"},
      {"demo-rsa",
       KeyAlgorithm::kRsa2048,
       {SignatureKind::kRsaPkcs1, HashAlgorithm::kSha256},
       "rsa_pkcs1_sha256"},
      {"demo-p256",
       KeyAlgorithm::kEcP256,
       {SignatureKind::kEcdsa, HashAlgorithm::kSha256},
       "ecdsa_secp256r1_sha256"},
      {"demo-p384",
       KeyAlgorithm::kEcP384,
       {SignatureKind::kEcdsa, HashAlgorithm::kSha384},
       "ecdsa_secp384r1_sha384"},
      {"demo-ed25519",
       KeyAlgorithm::kEd25519,
       {SignatureKind::kEdDsa, HashAlgorithm::kNone},
       "ed25519"},
  };
  const std::string message = "hello from offkey: this message is signed inside the HSM";
  int failures = 0;
  printf("\n%-13s %-9s %-24s %-42s %s\n", "key", "type", "scheme", "key id (SKI)",
         "OpenSSL verify");
  for (const Demo& d : demos) {
    auto key = (*store)->FindKey(hsm::KeyLookup::Name(d.name));
    if (absl::IsNotFound(key.status())) key = (*store)->GenerateKey(d.name, d.algorithm);
    if (!key.ok()) {
      fprintf(stderr, "%s: %s\n", d.name, key.status().ToString().c_str());
      return 1;
    }
    auto sig = (*store)->Sign(key->key_id, d.scheme, message, {});
    absl::Status verified = sig.ok() ? hsm::testing::VerifyWithOpenSsl(
                                           key->public_key_spki, d.scheme, message, *sig)
                                     : sig.status();
    if (!verified.ok()) ++failures;
    printf("%-13s %-9s %-24s %-42s %s\n", d.name,
           std::string(hsm::KeyAlgorithmName(key->algorithm)).c_str(), d.scheme_name,
           absl::BytesToHexString(key->ski).c_str(),
           verified.ok() ? "ok" : verified.ToString().c_str());
  }
  printf(
      "\n%s: %d of %zu signatures verified. State is kept in %s; run again to reuse "
      "the keys.\n",
      failures == 0 ? "demo passed" : "DEMO FAILED",
      static_cast<int>(sizeof(demos) / sizeof(demos[0])) - failures,
      sizeof(demos) / sizeof(demos[0]), state_dir.c_str());
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace offkey

int main(int argc, char** argv) { return offkey::Main(argc, argv); }
