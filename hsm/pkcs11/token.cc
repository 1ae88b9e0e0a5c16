#include "hsm/pkcs11/token.h"

#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "hsm/pkcs11/ck_rv.h"

namespace offkey::hsm::pkcs11 {
namespace {

// Recoveries per Run before the failure is reported: a session loss can be followed by
// a login loss, and either by a token reset.
constexpr int kMaxAttempts = 3;

// C_Login answers that the same PIN will never turn into a success.
bool IsPinRefused(CK_RV rv) {
  return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED ||
         rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE;
}

// `status` with its message prefixed by `operation`, payloads kept.
absl::Status Named(const absl::Status& status, absl::string_view operation) {
  absl::Status named(status.code(), absl::StrCat(operation, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    named.SetPayload(url, payload);
  });
  return named;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Token>> Token::Open(const TokenOptions& options) {
  if (options.max_sessions < 1) {
    return absl::InvalidArgumentError("max_sessions must be at least 1");
  }
  OFFKEY_ASSIGN_OR_RETURN(TokenUri uri, TokenUri::Parse(options.uri));
  std::string module_path =
      options.module_path.empty() ? uri.module_path : options.module_path;
  if (module_path.empty()) {
    return absl::InvalidArgumentError(
        "no PKCS#11 module: set the module path or module-path= in the token URI");
  }
  PinSource pin_source = options.pin;
  if (pin_source.file.empty() && pin_source.env.empty()) {
    pin_source.file = uri.pin_file;
  }
  OFFKEY_ASSIGN_OR_RETURN(SecretBytes pin, ReadPin(pin_source));
  OFFKEY_ASSIGN_OR_RETURN(Module * module, Module::Load(module_path));

  std::unique_ptr<Token> token(
      new Token(module, std::move(uri), std::move(pin), options.max_sessions));
  uint64_t generation = module->generation();
  std::string present;
  absl::StatusOr<CK_SLOT_ID> slot = token->FindSlotInCall(&present);
  if (!slot.ok() && absl::IsNotFound(slot.status())) {
    // The module may have been initialised before the token was created (a SoftHSM2
    // token made by softhsm2-util while we were running): rescan once.
    OFFKEY_RETURN_IF_ERROR(module->Reinitialize(generation));
    slot = token->FindSlotInCall(&present);
  }
  if (!slot.ok()) return slot.status();
  {
    offkey::MutexLock lock(&token->mu_);
    token->slot_ = *slot;
    token->module_generation_ = module->generation();
  }
  // Log in now so that a wrong PIN fails at start, not at the first handshake.
  absl::Status first =
      token->Run("open first session", absl::InfiniteFuture(),
                 [](CK_SESSION_HANDLE, int) { return absl::OkStatus(); });
  if (!token->PinRefused().ok()) {
    // At start a refused PIN is the operator's input, not an outage.
    return absl::PermissionDeniedError(token->PinRefused().message());
  }
  OFFKEY_RETURN_IF_ERROR(first);
  return token;
}

Token::Token(Module* module, TokenUri uri, SecretBytes pin, int max_sessions)
    : module_(module),
      uri_(std::move(uri)),
      pin_(std::move(pin)),
      max_sessions_(max_sessions) {}

Token::~Token() {
  Module::Call call(module_, absl::InfiniteFuture());
  offkey::MutexLock lock(&mu_);
  for (CK_SESSION_HANDLE s : idle_) fn()->C_CloseSession(s);
}

uint64_t Token::epoch() const {
  offkey::MutexLock lock(&mu_);
  return epoch_;
}

CK_SLOT_ID Token::slot() const {
  offkey::MutexLock lock(&mu_);
  return slot_;
}

int Token::sessions_in_use() const {
  offkey::MutexLock lock(&mu_);
  return leased_;
}

absl::StatusOr<CK_SLOT_ID> Token::FindSlot(std::string* present) const {
  CK_ULONG count = 0;
  CK_RV rv = fn()->C_GetSlotList(CK_TRUE, nullptr, &count);
  if (rv != CKR_OK) return CkRvStatus(rv, "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(count);
  rv = fn()->C_GetSlotList(CK_TRUE, slots.data(), &count);
  if (rv != CKR_OK) return CkRvStatus(rv, "C_GetSlotList");
  slots.resize(count);
  std::vector<std::string> seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (fn()->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
    if (uri_.Matches(slot, info)) return slot;
    seen.push_back(
        absl::StrCat("'", TrimPadded(info.label, sizeof(info.label)), "' (serial ",
                     TrimPadded(info.serialNumber, sizeof(info.serialNumber)), ")"));
  }
  *present = seen.empty() ? "none" : absl::StrJoin(seen, ", ");
  return absl::NotFoundError(absl::StrCat("no token matches ", uri_.ToString(),
                                          " in module '", module_->path(),
                                          "'; tokens present: ", *present));
}

absl::StatusOr<CK_SLOT_ID> Token::FindSlotInCall(std::string* present) const {
  // Waits out a re-initialisation, which is bounded (Module::Reinitialize).
  Module::Call call(module_, absl::InfiniteFuture());
  return FindSlot(present);
}

void Token::SyncWithModule() {
  // Another Token on the same module may have re-initialised it: every session and
  // the login are gone, and the slot may have moved.
  auto synced = [this] {
    return module_generation_.load(std::memory_order_acquire) == module_->generation();
  };
  if (synced()) return;  // The lock-free fast path of every Acquire.
  // Read the epoch first, then check again: if another caller recovered in between,
  // either the check or Recover (seeing a newer epoch) makes this a no-op.
  uint64_t seen_epoch = epoch();
  if (synced()) return;
  Recover(seen_epoch).IgnoreError();  // Run reports the failure of the retried call.
}

absl::StatusOr<Token::Lease> Token::Acquire(absl::Time deadline) {
  Lease lease;
  CK_SLOT_ID slot;
  {
    offkey::MutexLock lock(&mu_);
    auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < max_sessions_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&available), deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("no HSM session became free before the deadline (", max_sessions_,
                       " sessions, all in use)"));
    }
    ++leased_;
    lease.epoch = epoch_;
    lease.pool_generation = pool_generation_;
    lease.module_generation = module_generation_.load(std::memory_order_relaxed);
    if (!idle_.empty()) {
      lease.session = idle_.back();
      idle_.pop_back();
      if (logged_in_epoch_ == epoch_) return lease;
    }
    if (lease.session == CK_INVALID_HANDLE) ++open_;
    slot = slot_;
  }
  if (lease.session == CK_INVALID_HANDLE) {
    CK_RV rv = fn()->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                   nullptr, &lease.session);
    if (rv != CKR_OK) {
      offkey::MutexLock lock(&mu_);
      --open_;
      --leased_;
      return CkRvStatus(rv, "C_OpenSession");
    }
  }
  absl::Status login = Login(lease.session, lease.epoch);
  if (!login.ok()) {
    // The session itself is fine; do not leave it open in the module.
    fn()->C_CloseSession(lease.session);
    Release(lease, /*broken=*/true);
    return login;
  }
  return lease;
}

absl::Status Token::PinRefused() const {
  offkey::MutexLock lock(&mu_);
  return pin_refused_;
}

absl::Status Token::Login(CK_SESSION_HANDLE session, uint64_t epoch) {
  {
    offkey::MutexLock lock(&mu_);
    if (!pin_refused_.ok()) return pin_refused_;
    if (logged_in_epoch_ == epoch) return absl::OkStatus();
  }
  // The PIN buffer is const; PKCS#11 takes a non-const pointer but does not write.
  CK_RV rv = fn()->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin_.data()),
                           pin_.size());
  if (IsPinRefused(rv)) {
    offkey::MutexLock lock(&mu_);
    // Concurrent logins may all have been refused; the first one's words stand.
    if (pin_refused_.ok()) {
      pin_refused_ = absl::UnavailableError(absl::StrCat(
          "HSM token ", uri_.ToString(), " refused the PIN (C_Login: ", CkRvName(rv),
          "); it will not be tried again, since HSMs lock a PIN after a "
          "few wrong tries: correct the PIN source (or unlock the PIN on the HSM) and "
          "restart the service"));
    }
    return pin_refused_;
  }
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    return CkRvStatus(rv, absl::StrCat("C_Login to ", uri_.ToString()));
  }
  offkey::MutexLock lock(&mu_);
  if (epoch_ == epoch) logged_in_epoch_ = epoch;
  return absl::OkStatus();
}

void Token::Release(const Lease& lease, bool broken) {
  bool close = false;
  {
    offkey::MutexLock lock(&mu_);
    --leased_;
    if (!broken && lease.epoch == epoch_ && lease.pool_generation == pool_generation_) {
      idle_.push_back(lease.session);
      return;
    }
    // Not kept. It is closed unless its handle may already name another session: a
    // broken session is dead, a reset pool's sessions were closed by the module, and a
    // re-initialised module forgot them all (handles get reused). A recovery that
    // found the token where it was (a new epoch only) leaves it open, so close it.
    close = !broken && lease.pool_generation == pool_generation_ &&
            lease.module_generation == module_generation_.load(std::memory_order_relaxed);
    --open_;
  }
  // Outside mu_ (see CloseSessions).
  if (close) CloseSessions({lease.session});
}

void Token::CloseSessions(const std::vector<CK_SESSION_HANDLE>& sessions) {
  for (CK_SESSION_HANDLE s : sessions) fn()->C_CloseSession(s);
}

bool Token::LoggedIn(CK_SESSION_HANDLE session) const {
  Module::Call call(module_, absl::InfiniteFuture());  // Nested inside Run: at once.
  CK_SESSION_INFO info;
  return fn()->C_GetSessionInfo(session, &info) == CKR_OK &&
         (info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS);
}

void Token::ResetSessions(uint64_t seen_pool_generation) {
  std::vector<CK_SESSION_HANDLE> idle;
  {
    offkey::MutexLock lock(&mu_);
    if (pool_generation_ != seen_pool_generation) return;
    idle.swap(idle_);
    open_ -= static_cast<int>(idle.size());
    ++pool_generation_;
    logged_in_epoch_ = 0;
  }
  CloseSessions(idle);
}

absl::Status Token::Recover(uint64_t seen_epoch) {
  offkey::MutexLock recover_lock(&recover_mu_);
  {
    offkey::MutexLock lock(&mu_);
    if (epoch_ != seen_epoch) return absl::OkStatus();  // Someone else recovered.
  }
  // First look for the token as the module sees it now; only if it is not there make the
  // module rescan (re-initialising closes every session of every user of the module).
  uint64_t generation = module_->generation();
  std::string present;
  absl::StatusOr<CK_SLOT_ID> slot = FindSlotInCall(&present);
  if (!slot.ok()) {
    OFFKEY_RETURN_IF_ERROR(module_->Reinitialize(generation));
    generation = module_->generation();
    slot = FindSlotInCall(&present);
  }
  // The Call before mu_: a thread holding mu_ must never wait for the module gate, as
  // threads inside Calls take mu_.
  Module::Call call(module_, absl::InfiniteFuture());
  std::vector<CK_SESSION_HANDLE> idle;
  {
    offkey::MutexLock lock(&mu_);
    // Idle sessions belong to the old epoch: close them unless the module was reset,
    // in which case their handles are already gone.
    idle.swap(idle_);
    open_ -= static_cast<int>(idle.size());
    if (module_generation_ != generation) idle.clear();
    ++epoch_;
    module_generation_ = generation;
    if (slot.ok()) slot_ = *slot;
  }
  CloseSessions(idle);
  if (!slot.ok()) {
    return absl::UnavailableError(
        absl::StrCat("HSM token unavailable: ", slot.status().message()));
  }
  return absl::OkStatus();
}

Token::ObjectsGate::Pass::Pass(ObjectsGate* gate, bool exclusive, absl::Time deadline)
    : gate_(gate), exclusive_(exclusive) {
  if (gate_ == nullptr) return;
  offkey::MutexLock lock(&gate_->mu_);
  if (exclusive_) {
    // Waiting writers keep new readers out, so a stream of signatures cannot starve a
    // key generation.
    ++gate_->writers_waiting_;
    entered_ = gate_->mu_.AwaitWithDeadline(
        absl::Condition(
            +[](ObjectsGate* g) { return !g->writer_ && g->readers_ == 0; }, gate_),
        deadline);
    --gate_->writers_waiting_;
    if (entered_) gate_->writer_ = true;
  } else {
    entered_ = gate_->mu_.AwaitWithDeadline(
        absl::Condition(
            +[](ObjectsGate* g) { return !g->writer_ && g->writers_waiting_ == 0; },
            gate_),
        deadline);
    if (entered_) ++gate_->readers_;
  }
}

bool Token::ObjectsGate::ChangeUnderWay() {
  offkey::MutexLock lock(&mu_);
  return writer_ || writers_waiting_ > 0;
}

bool Token::ObjectChangeUnderWay() {
  return module_->object_changes_need_exclusive_access() &&
         objects_gate_.ChangeUnderWay();
}

Token::ObjectsGate::Pass::~Pass() {
  if (gate_ == nullptr || !entered_) return;
  offkey::MutexLock lock(&gate_->mu_);
  if (exclusive_) {
    gate_->writer_ = false;
  } else {
    --gate_->readers_;
  }
}

absl::Status Token::Run(
    absl::string_view operation, absl::Time deadline,
    absl::FunctionRef<absl::Status(CK_SESSION_HANDLE session, int attempt)> fn,
    Access access) {
  absl::Status last;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // Recovery may re-initialise the module, which waits for every Call to end: it runs
    // here, outside this attempt's Call.
    SyncWithModule();
    std::optional<uint64_t> recover_epoch;
    bool recovery_failure_is_the_answer = false;
    {
      Module::Call call(module_, deadline);
      if (!call.entered()) {
        return absl::DeadlineExceededError(
            absl::StrCat(operation,
                         ": the deadline passed while the PKCS#11 module was being "
                         "re-initialised"));
      }
      absl::StatusOr<Lease> lease = Acquire(deadline);
      if (!lease.ok()) {
        // A refused PIN is not an outage: recovering would change nothing.
        if (!PinRefused().ok()) return lease.status();
        // A token that is gone shows up as a failure to open a session or to log in.
        if (!absl::IsUnavailable(lease.status()) || attempt + 1 >= kMaxAttempts) {
          return lease.status();
        }
        last = lease.status();
        recover_epoch = epoch();
      } else {
        absl::Status status;
        {
          ObjectsGate::Pass pass(module_->object_changes_need_exclusive_access() &&
                                         access != Access::kSessionOnly
                                     ? &objects_gate_
                                     : nullptr,
                                 access == Access::kChange, deadline);
          if (!pass.entered()) {
            Release(*lease, /*broken=*/false);
            return absl::DeadlineExceededError(
                absl::StrCat(operation,
                             ": the deadline passed while another call changed the "
                             "token's objects"));
          }
          status = fn(lease->session, attempt);
        }
        std::optional<CK_RV> failed = CkRvOf(status);
        if (!failed.has_value()) {  // OK, or a failure that is not the token's.
          Release(*lease, /*broken=*/false);
          return status;
        }
        CK_RV rv = *failed;
        last = Named(status, operation);
        if (IsHandleStale(rv) && !LoggedIn(lease->session)) rv = CKR_USER_NOT_LOGGED_IN;
        if (IsSessionLost(rv)) {
          Release(*lease, /*broken=*/true);
          ResetSessions(lease->pool_generation);
        } else if (IsLoginLost(rv)) {
          {
            offkey::MutexLock lock(&mu_);
            if (logged_in_epoch_ == lease->epoch) logged_in_epoch_ = 0;
          }
          Release(*lease, /*broken=*/false);
        } else if (IsTokenLost(rv)) {
          Release(*lease, /*broken=*/true);
          recover_epoch = lease->epoch;
          recovery_failure_is_the_answer = true;
        } else if (IsHandleStale(rv) && attempt == 0) {
          Release(*lease, /*broken=*/false);
        } else {
          Release(*lease, /*broken=*/false);
          return last;
        }
      }
    }
    if (recover_epoch.has_value()) {
      absl::Status recovered = Recover(*recover_epoch);
      if (!recovered.ok() && recovery_failure_is_the_answer) return recovered;
    }
  }
  return last;
}

absl::Status Token::CheckHealth() {
  return Run(
      "health check", absl::Now() + absl::Seconds(2),
      [this](CK_SESSION_HANDLE session, int) {
        CK_SESSION_INFO info;
        CK_RV rv = fn()->C_GetSessionInfo(session, &info);
        if (rv == CKR_OK && info.state != CKS_RW_USER_FUNCTIONS) {
          rv = CKR_USER_NOT_LOGGED_IN;
        }
        return CkRvStatus(rv, "C_GetSessionInfo");
      },
      Access::kSessionOnly);
}

}  // namespace offkey::hsm::pkcs11
