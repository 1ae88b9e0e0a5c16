// A dlopen()ed PKCS#11 module.
#ifndef OFFKEY_HSM_PKCS11_MODULE_H_
#define OFFKEY_HSM_PKCS11_MODULE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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
  // Known from C_GetInfo's manufacturer; false for every other module.
  bool object_changes_need_exclusive_access() const { return exclusive_object_changes_; }

  // Incremented every time the module is re-initialised. Sessions and object handles
  // obtained under an older generation are dead.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // C_Finalize then C_Initialize, which makes modules rescan their slots (a token that
  // was removed and reinserted, a SoftHSM2 token created by another process). Does
  // nothing if the generation has moved past `seen_generation` already, so many callers
  // that saw the same failure cause one re-initialisation. Every session of every user
  // of the module is closed by it.
  absl::Status Reinitialize(uint64_t seen_generation);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* fn,
         bool exclusive_object_changes)
      : path_(std::move(path)),
        handle_(handle),
        fn_(fn),
        exclusive_object_changes_(exclusive_object_changes) {}

  const std::string path_;
  void* const handle_;
  CK_FUNCTION_LIST* const fn_;
  const bool exclusive_object_changes_;
  absl::Mutex mu_;  // Serialises re-initialisation.
  std::atomic<uint64_t> generation_{1};
};

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_MODULE_H_
