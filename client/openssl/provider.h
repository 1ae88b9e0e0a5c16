// The offkey OpenSSL 3 provider: what its parts share. See README.md beside this file for
// the openssl.cnf section and how servers use it.
//
// A key is a *reference* (client/key_reference.h): the key id and the public key. Loading
// one makes no RPC; signing or decrypting with it makes exactly one, to offkeyd, through
// liboffkey. Public operations (bits, group, matching a certificate) are answered from
// the embedded public key. Private parts never exist here and are never exported, which
// is what makes OpenSSL route signatures and decryptions to this provider.
#ifndef OFFKEY_CLIENT_OPENSSL_PROVIDER_H_
#define OFFKEY_CLIENT_OPENSSL_PROVIDER_H_

#include <openssl/async.h>
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "base/mutex.h"
#include "client/offkey_client.h"
#include "offkey/v1/key_reference.pb.h"

namespace offkey::client::openssl {

// The key types the provider manages, each with its OpenSSL names.
enum class KeyType { kRsa, kRsaPss, kEc, kEd25519 };
// The keymgmt name OpenSSL knows the type by ("RSA", "RSA-PSS", "EC", "ED25519").
const char* KeyTypeName(KeyType type);

// One per loaded provider instance.
class ProviderContext {
 public:
  ProviderContext(const OSSL_CORE_HANDLE* handle, OSSL_LIB_CTX* libctx,
                  OSSL_FUNC_BIO_read_ex_fn* bio_read_ex)
      : handle_(handle), libctx_(libctx), bio_read_ex_(bio_read_ex) {}
  ~ProviderContext();

  // Reads the provider's openssl.cnf section. A bad section does not stop the provider
  // from loading: OpenSSL 3.0 would drop it without a word (even with
  // config_diagnostics), leaving servers to fail on a key they cannot decode. Instead
  // every key load and operation fails with the reason (configuration()).
  void Configure(const OSSL_DISPATCH* core);
  const absl::Status& configuration() const { return configuration_; }

  // The client for this process, made on first use and again in a forked child (gRPC
  // cannot be used across fork: the parent's client is abandoned, not destroyed).
  absl::StatusOr<client::Client*> Client();

  // One call to offkeyd. Outside an ASYNC job (plain blocking servers) it runs `sync` on
  // the calling thread. Inside one (SSL_MODE_ASYNC: haproxy ssl-mode-async, s_server
  // -async) the job's fibre stack is too small for gRPC, so `async` is started on the
  // provider's dispatcher thread and the job pauses until the answer arrives, signalled
  // on an eventfd registered with the job's wait context.
  template <typename Response>
  absl::StatusOr<Response> Call(
      const std::function<absl::StatusOr<Response>(client::Client*)>& sync,
      std::function<void(client::Client*, client::Callback<Response>)> async);

  // A library context for public-key work in the default provider.
  OSSL_LIB_CTX* libctx() const { return libctx_; }
  OSSL_FUNC_BIO_read_ex_fn* bio_read_ex() const { return bio_read_ex_; }
  const client::ClientOptions& options() const { return options_; }

 private:
  const OSSL_CORE_HANDLE* const handle_;
  OSSL_LIB_CTX* const libctx_;
  OSSL_FUNC_BIO_read_ex_fn* const bio_read_ex_;
  client::ClientOptions options_;
  absl::Status configuration_;

  absl::Status ReadConfiguration(const OSSL_DISPATCH* core);

  // Runs `start` on the dispatcher thread and pauses the current ASYNC job until the
  // function `start` is given has been called. False if the job could not pause.
  bool PauseUntil(std::function<void(std::function<void()> wake)> start);

  offkey::Mutex mu_;
  pid_t pid_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<client::Client> client_ ABSL_GUARDED_BY(mu_);
};

template <typename Response>
absl::StatusOr<Response> ProviderContext::Call(
    const std::function<absl::StatusOr<Response>(client::Client*)>& sync,
    std::function<void(client::Client*, client::Callback<Response>)> async) {
  absl::StatusOr<client::Client*> client = Client();
  if (!client.ok()) return client.status();
  if (ASYNC_get_current_job() == nullptr) return sync(*client);
  struct Answer {
    absl::StatusOr<Response> result = absl::UnknownError("no answer");
  };
  auto answer = std::make_shared<Answer>();
  const bool paused = PauseUntil(
      [c = *client, async = std::move(async), answer](std::function<void()> wake) {
        async(c, [answer, wake = std::move(wake)](absl::StatusOr<Response> r) {
          answer->result = std::move(r);
          wake();
        });
      });
  if (!paused) return absl::InternalError("cannot pause the ASYNC job");
  return std::move(answer->result);
}

// A key object: a reference with its public key, or (imported for matching only) a
// public key alone.
struct Key {
  ProviderContext* provider = nullptr;
  KeyType type = KeyType::kRsa;
  v1::KeyReference ref;     // key_id empty for a public-only key.
  EVP_PKEY* pub = nullptr;  // In the default provider; owned.

  Key() = default;
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;
  ~Key() { EVP_PKEY_free(pub); }
  bool has_private() const { return !ref.key_id().empty(); }
};

// A key object reference (OSSL_OBJECT_PARAM_REFERENCE, keymgmt load) is the Key* itself.
inline constexpr size_t kKeyReferenceSize = sizeof(void*);
static_assert(sizeof(Key*) == sizeof(void*));

// Puts `status` on OpenSSL's error queue as "offkey: <code>: <message>".
void RaiseError(const absl::Status& status);

// One entry of a dispatch table.
template <typename F>
OSSL_DISPATCH Fn(int id, F* function) {
  return {id, reinterpret_cast<void (*)()>(function)};
}

// Hands `key` to OpenSSL as an object reference (decoders and the store loader): the
// keymgmt's load moves what it needs out of it, and the rest is freed on return.
// Returns what `object_cb` returns.
int PassKey(std::unique_ptr<Key> key, OSSL_CALLBACK* object_cb, void* object_arg);

// The dispatch tables of each operation (defined beside each operation).
extern const OSSL_DISPATCH* const kRsaKeymgmt;
extern const OSSL_DISPATCH* const kRsaPssKeymgmt;
extern const OSSL_DISPATCH* const kEcKeymgmt;
extern const OSSL_DISPATCH* const kEd25519Keymgmt;
extern const OSSL_DISPATCH* const kRsaSignature;
extern const OSSL_DISPATCH* const kEcdsaSignature;
extern const OSSL_DISPATCH* const kEd25519Signature;
extern const OSSL_DISPATCH* const kRsaAsymCipher;
extern const OSSL_DISPATCH* const kStore;
extern const OSSL_DISPATCH* const kPemDecoder;
extern const OSSL_DISPATCH* const kRsaDecoder;
extern const OSSL_DISPATCH* const kRsaPssDecoder;
extern const OSSL_DISPATCH* const kEcDecoder;
extern const OSSL_DISPATCH* const kEd25519Decoder;

// Makes a key from a checked key reference.
absl::StatusOr<std::unique_ptr<Key>> KeyFromReference(ProviderContext* provider,
                                                      v1::KeyReference ref);
// The key type a reference's algorithm belongs to (RSA-PSS is told by the public key).
absl::StatusOr<KeyType> KeyTypeOf(const v1::KeyReference& ref);

// The name of the DER structure the PEM decoder hands to the key decoders.
inline constexpr char kReferenceStructure[] = "OffkeyKeyReference";

}  // namespace offkey::client::openssl

#endif  // OFFKEY_CLIENT_OPENSSL_PROVIDER_H_
