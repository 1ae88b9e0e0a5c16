#include "tests/session_tickets.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <memory>

namespace offkey::tests {

std::string TicketOf(const std::string& session_file) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(session_file.c_str(), "r"),
                                                BIO_free);
  if (bio == nullptr) return "";
  std::unique_ptr<SSL_SESSION, decltype(&SSL_SESSION_free)> session(
      PEM_read_bio_SSL_SESSION(bio.get(), nullptr, nullptr, nullptr), SSL_SESSION_free);
  if (session == nullptr || !SSL_SESSION_has_ticket(session.get())) return "";
  const unsigned char* ticket = nullptr;
  size_t length = 0;
  SSL_SESSION_get0_ticket(session.get(), &ticket, &length);
  return std::string(reinterpret_cast<const char*>(ticket), length);
}

std::string WhyNotOpened(const std::string& ticket, const offkey::v1::TicketKey& key) {
  if (ticket.size() < 16 + 16 + 16 + 32) return "ticket too short";
  if (ticket.substr(0, 16) != key.name()) return "another key's name";
  const size_t body = ticket.size() - 32;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_length = 0;
  HMAC(EVP_sha256(), key.hmac_key().data(), static_cast<int>(key.hmac_key().size()),
       reinterpret_cast<const unsigned char*>(ticket.data()), body, mac, &mac_length);
  if (std::string(reinterpret_cast<char*>(mac), mac_length) != ticket.substr(body)) {
    return "HMAC does not verify with the HMAC key";
  }
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(
      EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  const auto* in = reinterpret_cast<const unsigned char*>(ticket.data());
  std::string plain(body, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  int n = 0;
  int last = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.aes_key().data()),
                         in + 16) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out, &n, in + 32, static_cast<int>(body - 32)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out + n, &last) != 1) {
    return "does not decrypt with the AES key";
  }
  const unsigned char* p = out;
  SSL_SESSION* session = d2i_SSL_SESSION(nullptr, &p, n + last);
  OPENSSL_cleanse(plain.data(), plain.size());
  if (session == nullptr) return "decrypts to something other than a session";
  SSL_SESSION_free(session);
  return "";
}

}  // namespace offkey::tests
