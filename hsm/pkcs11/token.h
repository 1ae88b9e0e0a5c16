// Token: one PKCS#11 token, its bounded session pool, the login, and recovery.
#ifndef OFFKEY_HSM_PKCS11_TOKEN_H_
#define OFFKEY_HSM_PKCS11_TOKEN_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "base/secret_bytes.h"
#include "hsm/pkcs11/module.h"
#include "hsm/pkcs11/pin.h"
#include "hsm/pkcs11/pkcs11.h"
#include "hsm/pkcs11/token_uri.h"

namespace offkey::hsm::pkcs11 {

struct TokenOptions {
  // The module to load. Overrides the URI's module-path; one of the two is required.
  std::string module_path;
  // Selects the token (RFC 7512), e.g. "pkcs11:token=offkey".
  std::string uri;
  // The user PIN. If empty, the URI's pin-source is used.
  PinSource pin;
  // Sessions opened at most; callers beyond this wait (up to their deadline).
  int max_sessions = 8;
};

// Owns a bounded pool of read-write sessions on one token, logged in as the user.
//
// Sessions are opened lazily up to `max_sessions` and reused; each caller holds one for
// the duration of `Run`. The token survives the failures a long-running service meets:
// a session the module closed (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED), a lost
// login (CKR_USER_NOT_LOGGED_IN), and a token that went away and came back
// (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, ...: the module is re-initialised and the
// token found again by its URI). Thread-safe.
class Token {
 public:
  // Loads the module, finds the token, reads the PIN and logs in once to check it.
  // Errors: INVALID_ARGUMENT (bad URI or options), NOT_FOUND (module file or token
  // missing; the message lists the tokens that are present), PERMISSION_DENIED (PIN).
  //
  // A PIN the token refuses (CKR_PIN_INCORRECT, _LOCKED, _EXPIRED, _INVALID, _LEN_RANGE)
  // is never presented again by this Token: HSMs lock the PIN after a few wrong tries,
  // so a PIN changed on the HSM must not become a locked token through retries. From
  // then on every Run and CheckHealth fails at once with UNAVAILABLE naming the CKR
  // and saying what to do (fix the PIN, restart); only a new Token tries again.
  static absl::StatusOr<std::unique_ptr<Token>> Open(const TokenOptions& options);
  ~Token();

  // What a Run does to the token's objects.
  enum class Access {
    kUse,     // Finds, reads and uses objects.
    kChange,  // Creates, modifies or destroys objects.
    // Uses the session alone (no object): never waits for an object change.
    kSessionOnly,
  };

  // Runs `fn` on a session and returns its status. A failure of a PKCS#11 call is a
  // status carrying the CK_RV (CkRvStatus); Run reads it to recover, and prefixes the
  // message of such a status with `operation`. Other statuses (not found, bad input)
  // are returned as they are. `fn` may run more than once: after a recoverable failure
  // (a CK_RV for a lost session, login or token, or a stale handle) the session is
  // replaced (and the login or the token re-established) and `fn` is called again
  // with `attempt` > 0. `fn` must look up object handles afresh when attempt > 0 or
  // when epoch() has changed since it cached them. DEADLINE_EXCEEDED if no session
  // frees up before `deadline`. On modules that need it
  // (Module::object_changes_need_exclusive_access), a kChange run waits until no other
  // run is in `fn`, and keeps the others out until it is done. Each attempt holds a
  // Module::Call, so `fn` may call the module; it waits (up to `deadline`) while the
  // module is being re-initialised.
  absl::Status Run(
      absl::string_view operation, absl::Time deadline,
      absl::FunctionRef<absl::Status(CK_SESSION_HANDLE session, int attempt)> fn,
      Access access = Access::kUse);

  // Changes whenever object handles may have become invalid (re-initialisation).
  uint64_t epoch() const;

  // Whether `session` is logged in as the user. Modules differ in how they report an
  // operation on a private object after the login was lost (CKR_USER_NOT_LOGGED_IN,
  // a stale handle, or simply no object found); callers that find nothing ask this.
  bool LoggedIn(CK_SESSION_HANDLE session) const;

  const CK_FUNCTION_LIST* fn() const { return module_->fn(); }
  // See Module::may_reuse_object_handles.
  bool may_reuse_object_handles() const { return module_->may_reuse_object_handles(); }
  const TokenUri& uri() const { return uri_; }
  int max_sessions() const { return max_sessions_; }
  // The slot the token was last found in (for tools that open sessions of their own).
  CK_SLOT_ID slot() const;
  int sessions_in_use() const;

  // OK if a session can be used and is logged in (recovering first if needed);
  // UNAVAILABLE otherwise. Does not wait for object changes.
  absl::Status CheckHealth();

  // Whether a kChange run holds the token's objects or waits for them, on modules whose
  // object changes run alone (false on others): then kUse runs wait.
  bool ObjectChangeUnderWay();

  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

 private:
  struct Lease {
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    uint64_t epoch = 0;
    uint64_t pool_generation = 0;
    // The module generation the session was opened in: while it is unchanged the
    // handle is still ours to close, whatever recoveries happened meanwhile.
    uint64_t module_generation = 0;
  };

  Token(Module* module, TokenUri uri, SecretBytes pin, int max_sessions);

  absl::StatusOr<Lease> Acquire(absl::Time deadline);
  // Returns a session to the pool; one from an older epoch or pool generation is closed
  // instead, unless its handle may no longer be ours (see Release).
  void Release(const Lease& lease, bool broken);
  absl::Status Login(CK_SESSION_HANDLE session, uint64_t epoch);
  // The refusal recorded by Login, or OK.
  absl::Status PinRefused() const;
  // Finds the token again (re-initialising the module if it is not among the present
  // ones) and starts a new epoch: idle sessions and cached handles are dropped. Must
  // be called outside any Module::Call (re-initialising waits for them all to end).
  absl::Status Recover(uint64_t seen_epoch);
  // The slot whose token matches the URI; NOT_FOUND lists the tokens present.
  absl::StatusOr<CK_SLOT_ID> FindSlot(std::string* present) const;
  // FindSlot under its own Module::Call, for callers outside one.
  absl::StatusOr<CK_SLOT_ID> FindSlotInCall(std::string* present) const;
  void SyncWithModule();
  // Closes sessions no longer in the pool. Called without mu_, inside a Module::Call (so
  // no re-initialisation can hand the handles to other sessions meanwhile): a module
  // that hangs in C_CloseSession must hold up only its caller, not every user of mu_.
  void CloseSessions(const std::vector<CK_SESSION_HANDLE>& sessions);
  // Drops every idle session and forgets the login, after one session was found closed
  // (modules close all sessions at once, and the login ends with the last of them).
  void ResetSessions(uint64_t seen_pool_generation);

  Module* const module_;
  const TokenUri uri_;
  const SecretBytes pin_;
  const int max_sessions_;

  mutable offkey::Mutex mu_;
  CK_SLOT_ID slot_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
  // The module generation our sessions belong to. Written under mu_; read without it on
  // every Acquire, which must not take the lock twice.
  std::atomic<uint64_t> module_generation_{0};
  uint64_t logged_in_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Set once the token refused the PIN; then C_Login is never called again.
  absl::Status pin_refused_ ABSL_GUARDED_BY(mu_);
  uint64_t pool_generation_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<CK_SESSION_HANDLE> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;    // Sessions opened (idle + leased + opening).
  int leased_ ABSL_GUARDED_BY(mu_) = 0;  // Sessions handed to callers.

  // A readers-writer gate with deadlines: kUse runs pass together, a kChange run alone.
  class ObjectsGate {
   public:
    // Enters `gate` (none if null) until destroyed, if it can before `deadline`.
    class Pass {
     public:
      Pass(ObjectsGate* gate, bool exclusive, absl::Time deadline);
      ~Pass();
      bool entered() const { return entered_; }
      Pass(const Pass&) = delete;
      Pass& operator=(const Pass&) = delete;

     private:
      ObjectsGate* const gate_;
      const bool exclusive_;
      bool entered_ = true;
    };

    // Whether an object change holds the gate or waits for it.
    bool ChangeUnderWay();

   private:
    offkey::Mutex mu_;
    int readers_ ABSL_GUARDED_BY(mu_) = 0;
    int writers_waiting_ ABSL_GUARDED_BY(mu_) = 0;
    bool writer_ ABSL_GUARDED_BY(mu_) = false;
  };

  offkey::Mutex recover_mu_;  // One recovery at a time.
  // Used only on modules whose object changes need exclusive access.
  ObjectsGate objects_gate_;
};

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_TOKEN_H_
