// A dlopen()ed PKCS#11 module.
#ifndef OFFKEY_HSM_PKCS11_MODULE_H_
#define OFFKEY_HSM_PKCS11_MODULE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11 {

// One loaded and initialised module. A module is process-wide state (C_Initialize is
// per process), so Load() returns the same instance for the same path, and instances live
// until the process ends: C_Finalize is never called at exit, because modules such as
// SoftHSM2 crash when finalised during static destruction. Thread-safe.
class Module {
 public:
  // Loads `path` (dlopen, C_GetFunctionList, C_Initialize with OS locking), or returns
  // the instance already loaded from it. The pointer stays valid for the process.
  // Errors: NOT_FOUND if the file cannot be loaded, INVALID_ARGUMENT if it is not a
  // PKCS#11 module, the mapped CK_RV of C_Initialize otherwise.
  static absl::StatusOr<Module*> Load(const std::string& path);

  const CK_FUNCTION_LIST* fn() const { return fn_; }
  const std::string& path() const { return path_; }

  // Whether calls that create, change or destroy token objects must not run beside any
  // other call on the token. True for SoftHSM2 (2.6): its file store writes an object
  // file before registering it, and another thread that re-reads the token meanwhile
  // takes the half-written file for the object, so both calls fail at random
  // (CKR_GENERAL_ERROR, CKR_TEMPLATE_INCONSISTENT) and later reads miss attributes.
  // True for opencryptoki (3.8): reading an object that another thread is destroying
  // fails with CKR_FUNCTION_FAILED and then crashes the process inside the module.
  // Known from C_GetInfo's manufacturer and description; false for every other module.
  bool object_changes_need_exclusive_access() const { return exclusive_object_changes_; }

  // Whether a handle of a destroyed object may come back naming another object. True
  // for tpm2-pkcs11 1.9 (handles are its database's row ids: destroy the newest object,
  // create one, and it gets the same handle) and assumed for every module but SoftHSM2,
  // whose handles only count up. Cached handles must then be checked on use.
  bool may_reuse_object_handles() const { return may_reuse_object_handles_; }

  // Incremented every time the module is re-initialised. Sessions and object handles
  // obtained under an older generation are dead.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Holds the module open for calls into it: while any Call exists, Reinitialize does
  // not call C_Finalize (PKCS#11 leaves finalising beside other calls undefined, and
  // SoftHSM2 frees the state they are using). Every call into fn() must be made under
  // a Call. A Call waits while a re-initialisation is under way, until `deadline`.
  // Calls nest: a thread already holding one on this module enters at once. A thread
  // must not call Reinitialize while it holds a Call (Reinitialize refuses).
  class Call {
   public:
    Call(Module* module, absl::Time deadline);
    ~Call();
    // False if the deadline passed before the re-initialisation under way ended; the
    // module must not be called then.
    bool entered() const { return entered_; }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    Module* const module_;
    bool entered_ = false;
    bool nested_ = false;
  };

  // C_Finalize then C_Initialize, which makes modules rescan their slots (a token that
  // was removed and reinserted, a SoftHSM2 token created by another process). Does
  // nothing if the generation has moved past `seen_generation` already, so many callers
  // that saw the same failure cause one re-initialisation. Every session of every user
  // of the module is closed by it.
  //
  // It first keeps new Calls out and waits for the Calls in flight to end, for at most
  // the drain timeout. A call that never returns (a hung HSM) must not stop the
  // service: if Calls remain when the timeout passes, the module is left as it is, new
  // Calls go in again, and UNAVAILABLE says how many were stuck; re-initialisations
  // asked for within one more drain timeout while calls are still in flight fail the
  // same way at once, so callers are not held up again and again by the same stuck
  // call. New Calls wait at most the
  // drain timeout plus the time C_Finalize and C_Initialize take.
  absl::Status Reinitialize(uint64_t seen_generation);

  // How long Reinitialize waits for calls in flight (default kDefaultDrainTimeout).
  void SetDrainTimeoutForTest(absl::Duration timeout);
  static constexpr absl::Duration kDefaultDrainTimeout = absl::Seconds(5);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* fn,
         bool exclusive_object_changes, bool may_reuse_object_handles)
      : path_(std::move(path)),
        handle_(handle),
        fn_(fn),
        exclusive_object_changes_(exclusive_object_changes),
        may_reuse_object_handles_(may_reuse_object_handles) {}

  const std::string path_;
  void* const handle_;
  CK_FUNCTION_LIST* const fn_;
  const bool exclusive_object_changes_;
  const bool may_reuse_object_handles_;
  offkey::Mutex mu_;  // Serialises re-initialisation.
  std::atomic<uint64_t> generation_{1};

  // The gate between Calls and Reinitialize. std::mutex rather than absl::Mutex, so
  // that ThreadSanitizer sees it (Debian's Abseil is not instrumented). Taken after
  // mu_. The members below up to drain_failure_ are guarded by it.
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  int calls_in_flight_ = 0;
  bool reinitializing_ = false;
  absl::Duration drain_timeout_ = kDefaultDrainTimeout;
  // After a drain that timed out: re-initialisations fail at once until then (while
  // calls are in flight).
  absl::Time drain_failed_until_ = absl::InfinitePast();
  absl::Status drain_failure_;
};

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_MODULE_H_
