// The provider's entry point (OSSL_provider_init), its configuration and its client.
#include "client/openssl/provider.h"

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/key_reference.h"

namespace offkey::client::openssl {

const char* KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kRsa:
      return "RSA";
    case KeyType::kRsaPss:
      return "RSA-PSS";
    case KeyType::kEc:
      return "EC";
    case KeyType::kEd25519:
      return "ED25519";
  }
  return "";
}

void RaiseError(const absl::Status& status) {
  ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "offkey: %s: %s",
                 absl::StatusCodeToString(status.code()).c_str(),
                 std::string(status.message()).c_str());
}

ProviderContext::~ProviderContext() {
  // A client made in this process is destroyed (it waits for calls in flight); one
  // inherited across fork is abandoned.
  offkey::MutexLock lock(&mu_);
  if (pid_ != getpid()) (void)client_.release();
  OSSL_LIB_CTX_free(libctx_);
}

void ProviderContext::Configure(const OSSL_DISPATCH* core) {
  configuration_ = ReadConfiguration(core);
}

absl::Status ProviderContext::ReadConfiguration(const OSSL_DISPATCH* core) {
  OSSL_FUNC_core_get_params_fn* get_params = nullptr;
  for (; core->function_id != 0; ++core) {
    if (core->function_id == OSSL_FUNC_CORE_GET_PARAMS) {
      get_params = OSSL_FUNC_core_get_params(core);
    }
  }
  if (get_params == nullptr) return absl::InternalError("the core offers no get_params");

  // Every key of the section; absent ones stay null.
  const char* endpoint = nullptr;
  const char* ca = nullptr;
  const char* cert = nullptr;
  const char* key = nullptr;
  const char* server_name = nullptr;
  const char* deadline_ms = nullptr;
  const char* max_attempts = nullptr;
  const char* transport = nullptr;
  OSSL_PARAM params[] = {
      OSSL_PARAM_utf8_ptr("endpoint", &endpoint, 0),
      OSSL_PARAM_utf8_ptr("tls_ca_file", &ca, 0),
      OSSL_PARAM_utf8_ptr("tls_cert_file", &cert, 0),
      OSSL_PARAM_utf8_ptr("tls_key_file", &key, 0),
      OSSL_PARAM_utf8_ptr("server_name", &server_name, 0),
      OSSL_PARAM_utf8_ptr("deadline_ms", &deadline_ms, 0),
      OSSL_PARAM_utf8_ptr("max_attempts", &max_attempts, 0),
      OSSL_PARAM_utf8_ptr("transport", &transport, 0),
      OSSL_PARAM_END,
  };
  if (get_params(handle_, params) != 1) {
    return absl::InternalError("cannot read the provider's openssl.cnf section");
  }
  auto need = [](const char* value, const char* name) {
    return value != nullptr && *value != '\0'
               ? absl::OkStatus()
               : absl::InvalidArgumentError(
                     absl::StrCat("'", name,
                                  "' is missing from the offkey provider's "
                                  "openssl.cnf section (see client/openssl/README.md)"));
  };
  for (const absl::Status& s : {need(endpoint, "endpoint"), need(ca, "tls_ca_file"),
                                need(cert, "tls_cert_file"), need(key, "tls_key_file")}) {
    if (!s.ok()) return s;
  }
  options_.target = endpoint;
  options_.ca_file = ca;
  options_.cert_file = cert;
  options_.key_file = key;
  if (server_name != nullptr) options_.server_name = server_name;
  if (deadline_ms != nullptr) {
    int ms = 0;
    if (!absl::SimpleAtoi(deadline_ms, &ms) || ms <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deadline_ms in the offkey provider's section must be a positive number of "
          "milliseconds, not '",
          deadline_ms, "'"));
    }
    options_.deadline = absl::Milliseconds(ms);
  }
  if (max_attempts != nullptr) {
    int n = 0;
    if (!absl::SimpleAtoi(max_attempts, &n) || n < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_attempts in the offkey provider's section must be at least 1, not '",
          max_attempts, "'"));
    }
    options_.max_attempts = n;
  }
  // Blocking handshakes go over Pipeline streams unless told otherwise: it saves a new
  // HTTP/2 stream per handshake. ASYNC jobs always use unary calls.
  options_.pipeline = true;
  if (transport != nullptr) {
    const absl::string_view t = transport;
    if (t != "stream" && t != "unary") {
      return absl::InvalidArgumentError(
          absl::StrCat("transport in the offkey provider's section must be 'stream' or "
                       "'unary', not '",
                       t, "'"));
    }
    options_.pipeline = t == "stream";
  }
  return absl::OkStatus();
}

absl::StatusOr<client::Client*> ProviderContext::Client() {
  if (!configuration_.ok()) return configuration_;
  offkey::MutexLock lock(&mu_);
  const pid_t pid = getpid();
  if (client_ != nullptr && pid_ == pid) return client_.get();
  (void)client_.release();  // Made before a fork: unusable here, and unsafe to destroy.
  absl::StatusOr<std::unique_ptr<client::Client>> made = client::Client::Create(options_);
  if (!made.ok()) return made.status();
  client_ = *std::move(made);
  pid_ = pid;
  return client_.get();
}

namespace {

// A thread that starts RPCs for paused ASYNC jobs, one per process (made again after a
// fork). Its state is shared with the thread so that it outlives the provider.
struct Dispatcher {
  offkey::Mutex mu;
  std::deque<std::function<void()>> queue ABSL_GUARDED_BY(mu);
};

void Post(std::function<void()> task) {
  static offkey::Mutex mu(absl::kConstInit);
  static pid_t pid = 0;
  static std::shared_ptr<Dispatcher>* dispatcher = nullptr;
  offkey::MutexLock lock(&mu);
  if (pid != getpid()) {
    dispatcher = new std::shared_ptr<Dispatcher>(std::make_shared<Dispatcher>());
    pid = getpid();
    std::thread([d = *dispatcher] {
      // Named so a terminator's CPU can be split by thread (top, perf, thread_cpu.py).
      pthread_setname_np(pthread_self(), "offkey-dispatch");
      for (;;) {
        std::function<void()> next;
        {
          offkey::MutexLock l(&d->mu);
          d->mu.Await(absl::Condition(
              +[](std::deque<std::function<void()>>* q) { return !q->empty(); },
              &d->queue));
          next = std::move(d->queue.front());
          d->queue.pop_front();
        }
        next();
      }
    }).detach();
  }
  offkey::MutexLock l(&(*dispatcher)->mu);
  (*dispatcher)->queue.push_back(std::move(task));
}

// The key under which the eventfd is registered with a job's wait context.
const char kWaitKey = 0;

void CloseWaitFd(ASYNC_WAIT_CTX*, const void*, OSSL_ASYNC_FD fd, void*) { close(fd); }

}  // namespace

bool ProviderContext::PauseUntil(std::function<void(std::function<void()> wake)> start) {
  ASYNC_WAIT_CTX* wait = ASYNC_get_wait_ctx(ASYNC_get_current_job());
  if (wait == nullptr) return false;
  OSSL_ASYNC_FD fd = -1;
  void* custom = nullptr;
  bool fresh = false;  // A new fd the application has not been told of yet.
  if (ASYNC_WAIT_CTX_get_fd(wait, &kWaitKey, &fd, &custom) != 1) {
    fresh = true;
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return false;
    if (ASYNC_WAIT_CTX_set_wait_fd(wait, &kWaitKey, fd, nullptr, CloseWaitFd) != 1) {
      close(fd);
      return false;
    }
  }
  // The waker signals its own duplicate of the fd: the wait context may close the
  // original (connection gone) while the answer is still on its way.
  struct Waker {
    int fd = -1;
    std::atomic<bool> done{false};
    ~Waker() {
      if (fd >= 0) close(fd);
    }
  };
  auto waker = std::make_shared<Waker>();
  waker->fd = dup(fd);
  if (waker->fd < 0) return false;
  Post([start = std::move(start), waker] {
    start([waker] {
      waker->done.store(true, std::memory_order_release);
      const uint64_t one = 1;
      (void)!write(waker->fd, &one, sizeof(one));
    });
  });
  // With a fresh fd, pause even when the answer is already in: an application learns
  // of a wait fd only from a paused job (SSL_get_changed_async_fds after WANT_ASYNC),
  // and haproxy deletes every fd of the wait context from its poller at close, so an
  // fd it never saw makes it abort. The fd is readable by then, so the pause is short.
  while (fresh || !waker->done.load(std::memory_order_acquire)) {
    fresh = false;
    if (ASYNC_pause_job() != 1) return false;
  }
  uint64_t count = 0;
  (void)!read(fd, &count, sizeof(count));  // Consumed, so the fd is quiet again.
  return true;
}

int PassKey(std::unique_ptr<Key> key, OSSL_CALLBACK* object_cb, void* object_arg) {
  Key* reference = key.get();
  int object = OSSL_OBJECT_PKEY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                       const_cast<char*>(KeyTypeName(key->type)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &reference,
                                        kKeyReferenceSize),
      OSSL_PARAM_construct_end(),
  };
  return object_cb(params, object_arg);
}

absl::StatusOr<KeyType> KeyTypeOf(const v1::KeyReference& ref) {
  const client::KeyAlgorithmTraits* row = client::FindKeyAlgorithmTraits(ref.algorithm());
  if (row != nullptr) {
    for (KeyType type : {KeyType::kRsa, KeyType::kEc, KeyType::kEd25519}) {
      if (std::strcmp(KeyTypeName(type), row->openssl_type) == 0) return type;
    }
  }
  return absl::InvalidArgumentError("key reference: unsupported algorithm");
}

absl::StatusOr<std::unique_ptr<Key>> KeyFromReference(ProviderContext* provider,
                                                      v1::KeyReference ref) {
  if (!provider->configuration().ok()) return provider->configuration();
  absl::StatusOr<KeyType> type = KeyTypeOf(ref);
  if (!type.ok()) return type.status();
  auto key = std::make_unique<Key>();
  key->provider = provider;
  key->type = *type;
  const std::string& spki = ref.public_key_spki();
  const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
  key->pub = d2i_PUBKEY_ex(nullptr, &p, static_cast<long>(spki.size()),  // NOLINT
                           provider->libctx(), "provider=default");
  if (key->pub == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("key reference: unreadable public key");
  }
  if (EVP_PKEY_is_a(key->pub, "RSA-PSS")) key->type = KeyType::kRsaPss;
  key->ref = std::move(ref);
  return key;
}

namespace {

constexpr char kProperties[] = "provider=offkey";
constexpr char kPemProperties[] = "provider=offkey,input=pem";
constexpr char kDecoderProperties[] =
    "provider=offkey,input=der,structure=OffkeyKeyReference";

const OSSL_ALGORITHM kKeymgmt[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", kProperties, kRsaKeymgmt, nullptr},
    {"RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10", kProperties, kRsaPssKeymgmt, nullptr},
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", kProperties, kEcKeymgmt, nullptr},
    {"ED25519:1.3.101.112", kProperties, kEd25519Keymgmt, nullptr},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kSignature[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", kProperties, kRsaSignature, nullptr},
    {"ECDSA", kProperties, kEcdsaSignature, nullptr},
    {"ED25519:1.3.101.112", kProperties, kEd25519Signature, nullptr},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kAsymCipher[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", kProperties, kRsaAsymCipher, nullptr},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kDecoder[] = {
    {"DER", kPemProperties, kPemDecoder, nullptr},
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", kDecoderProperties, kRsaDecoder, nullptr},
    {"RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10", kDecoderProperties, kRsaPssDecoder,
     nullptr},
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", kDecoderProperties, kEcDecoder, nullptr},
    {"ED25519:1.3.101.112", kDecoderProperties, kEd25519Decoder, nullptr},
    {nullptr, nullptr, nullptr, nullptr},
};

const OSSL_ALGORITHM kStoreLoaders[] = {
    {"offkey", kProperties, kStore, nullptr},
    {nullptr, nullptr, nullptr, nullptr},
};

const OSSL_ALGORITHM* QueryOperation(void*, int operation_id, int* no_cache) {
  *no_cache = 0;
  switch (operation_id) {
    case OSSL_OP_KEYMGMT:
      return kKeymgmt;
    case OSSL_OP_SIGNATURE:
      return kSignature;
    case OSSL_OP_ASYM_CIPHER:
      return kAsymCipher;
    case OSSL_OP_DECODER:
      return kDecoder;
    case OSSL_OP_STORE:
      return kStoreLoaders;
    default:
      return nullptr;
  }
}

const OSSL_PARAM* GettableParams(void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, nullptr, 0),
      OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, nullptr, 0),
      OSSL_PARAM_END,
  };
  return kParams;
}

int GetParams(void* provctx, OSSL_PARAM params[]) {
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
  if (p != nullptr && !OSSL_PARAM_set_utf8_ptr(p, "offkey: keys behind offkeyd")) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
  // Inactive (as `openssl list -providers` shows) when the section is unusable.
  const bool usable = static_cast<ProviderContext*>(provctx)->configuration().ok();
  if (p != nullptr && !OSSL_PARAM_set_int(p, usable ? 1 : 0)) return 0;
  return 1;
}

void Teardown(void* provctx) { delete static_cast<ProviderContext*>(provctx); }

const OSSL_DISPATCH kProviderFunctions[] = {
    Fn(OSSL_FUNC_PROVIDER_TEARDOWN, Teardown),
    Fn(OSSL_FUNC_PROVIDER_QUERY_OPERATION, QueryOperation),
    Fn(OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, GettableParams),
    Fn(OSSL_FUNC_PROVIDER_GET_PARAMS, GetParams),
    {0, nullptr},
};

}  // namespace
}  // namespace offkey::client::openssl

extern "C" int OSSL_provider_init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in,
                                  const OSSL_DISPATCH** out, void** provctx) {
  using offkey::client::openssl::ProviderContext;
  // Abseil's mutex deadlock detection (on in Debian's build) costs every lock a graph
  // update; liboffkey's locks are simple and tested, so the provider turns it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  OSSL_FUNC_BIO_read_ex_fn* bio_read_ex = nullptr;
  for (const OSSL_DISPATCH* f = in; f->function_id != 0; ++f) {
    if (f->function_id == OSSL_FUNC_BIO_READ_EX) bio_read_ex = OSSL_FUNC_BIO_read_ex(f);
  }
  // A child library context sees the application's providers (default among them)
  // for public-key work, without loading anything of its own.
  OSSL_LIB_CTX* libctx = OSSL_LIB_CTX_new_child(handle, in);
  if (libctx == nullptr || bio_read_ex == nullptr) {
    OSSL_LIB_CTX_free(libctx);
    return 0;
  }
  auto context = std::make_unique<ProviderContext>(handle, libctx, bio_read_ex);
  context->Configure(in);
  *out = offkey::client::openssl::kProviderFunctions;
  *provctx = context.release();
  return 1;
}
