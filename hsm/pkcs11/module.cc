#include "hsm/pkcs11/module.h"

#include <dlfcn.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "hsm/pkcs11/ck_rv.h"

namespace offkey::hsm::pkcs11 {
namespace {

offkey::Mutex registry_mu(absl::kConstInit);

std::map<std::string, Module*>& Registry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu) {
  static auto* registry = new std::map<std::string, Module*>();  // Never destroyed.
  return *registry;
}

CK_RV Initialize(CK_FUNCTION_LIST* fn) {
  CK_C_INITIALIZE_ARGS args = {};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = fn->C_Initialize(&args);
  // Another part of the process (a PKCS#11 engine, say) may have initialised it first.
  return rv == CKR_CRYPTOKI_ALREADY_INITIALIZED ? CKR_OK : rv;
}

// What C_GetInfo's manufacturer and description say about a module's object store (see
// Module::object_changes_need_exclusive_access and Module::may_reuse_object_handles).
struct Quirks {
  bool exclusive_object_changes = false;
  bool may_reuse_object_handles = true;
};

Quirks QuirksOf(CK_FUNCTION_LIST* fn) {
  Quirks quirks;
  CK_INFO info;
  if (fn->C_GetInfo(&info) != CKR_OK) return quirks;
  const absl::string_view manufacturer(reinterpret_cast<const char*>(info.manufacturerID),
                                       sizeof(info.manufacturerID));
  const absl::string_view description(
      reinterpret_cast<const char*>(info.libraryDescription),
      sizeof(info.libraryDescription));
  const bool softhsm = absl::StartsWith(manufacturer, "SoftHSM");
  quirks.exclusive_object_changes =
      softhsm || (absl::StartsWith(manufacturer, "IBM") &&
                  absl::StartsWith(description, "Meta PKCS11 LIBRARY"));
  // SoftHSM2's handle manager counts up and never hands a handle out twice.
  quirks.may_reuse_object_handles = !softhsm;
  return quirks;
}

// The modules this thread holds a Call on, so that nested Calls enter at once (a
// nested wait behind a pending re-initialisation would deadlock: it waits for us).
thread_local std::vector<const Module*> calls_held;

bool HeldByThisThread(const Module* module) {
  return std::find(calls_held.begin(), calls_held.end(), module) != calls_held.end();
}

}  // namespace

Module::Call::Call(Module* module, absl::Time deadline) : module_(module) {
  if (HeldByThisThread(module_)) {
    entered_ = nested_ = true;
    return;
  }
  std::unique_lock<std::mutex> lock(module_->gate_mu_);
  auto open = [this] { return !module_->reinitializing_; };
  if (deadline == absl::InfiniteFuture()) {
    module_->gate_cv_.wait(lock, open);
    entered_ = true;
  } else {
    entered_ = module_->gate_cv_.wait_until(lock, absl::ToChronoTime(deadline), open);
  }
  if (!entered_) return;
  ++module_->calls_in_flight_;
  calls_held.push_back(module_);
}

Module::Call::~Call() {
  if (!entered_ || nested_) return;
  calls_held.erase(std::find(calls_held.begin(), calls_held.end(), module_));
  std::lock_guard<std::mutex> lock(module_->gate_mu_);
  if (--module_->calls_in_flight_ == 0) module_->gate_cv_.notify_all();
}

void Module::SetDrainTimeoutForTest(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(gate_mu_);
  drain_timeout_ = timeout;
}

absl::StatusOr<Module*> Module::Load(const std::string& path) {
  offkey::MutexLock lock(&registry_mu);
  auto it = Registry().find(path);
  if (it != Registry().end()) return it->second;

  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot load PKCS#11 module '", path, "': ", dlerror()));
  }
  auto get_list =
      reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
  if (get_list == nullptr) {
    dlclose(handle);
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not a PKCS#11 module (no C_GetFunctionList)"));
  }
  CK_FUNCTION_LIST* fn = nullptr;
  CK_RV rv = get_list(&fn);
  if (rv != CKR_OK || fn == nullptr) {
    dlclose(handle);
    return CkRvStatus(rv == CKR_OK ? CKR_GENERAL_ERROR : rv,
                      absl::StrCat("C_GetFunctionList of '", path, "'"));
  }
  if (fn->version.major != 2 && fn->version.major != 3) {
    dlclose(handle);
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' implements PKCS#11 ", fn->version.major, ".",
                     fn->version.minor, "; offkey needs 2.x or 3.x"));
  }
  rv = Initialize(fn);
  if (rv != CKR_OK) {
    dlclose(handle);
    return CkRvStatus(rv, absl::StrCat("C_Initialize of '", path, "'"));
  }
  // Lives until the process ends.
  const Quirks quirks = QuirksOf(fn);
  auto* module = new Module(path, handle, fn, quirks.exclusive_object_changes,
                            quirks.may_reuse_object_handles);
  Registry()[path] = module;
  return module;
}

absl::Status Module::Reinitialize(uint64_t seen_generation) {
  if (HeldByThisThread(this)) {
    // It would wait for its own Call to end.
    return absl::InternalError(
        "PKCS#11 module re-initialisation asked for from inside a call to the module");
  }
  offkey::MutexLock lock(&mu_);
  if (generation() != seen_generation) return absl::OkStatus();
  {
    std::unique_lock<std::mutex> gate(gate_mu_);
    if (calls_in_flight_ > 0 && absl::Now() < drain_failed_until_) {
      return drain_failure_;  // Most likely the same stuck call: do not wait again.
    }
    reinitializing_ = true;  // New Calls wait from here on.
    const absl::Duration timeout = drain_timeout_;
    if (!gate_cv_.wait_for(gate, absl::ToChronoNanoseconds(timeout),
                           [this] { return calls_in_flight_ == 0; })) {
      reinitializing_ = false;
      gate_cv_.notify_all();
      drain_failed_until_ = absl::Now() + timeout;
      drain_failure_ = absl::UnavailableError(absl::StrCat(
          "PKCS#11 module '", path_, "' not re-initialised: ", calls_in_flight_,
          " call(s) still inside it after ", absl::FormatDuration(timeout),
          " (a hung HSM call?); finalising under them is undefined"));
      return drain_failure_;
    }
  }
  // No Call is in flight and none can start: the module is ours alone.
  fn_->C_Finalize(nullptr);  // Its result does not matter: we start over either way.
  generation_.fetch_add(1, std::memory_order_acq_rel);
  const CK_RV rv = Initialize(fn_);
  {
    std::lock_guard<std::mutex> gate(gate_mu_);
    reinitializing_ = false;
    gate_cv_.notify_all();
  }
  return CkRvStatus(rv, absl::StrCat("C_Initialize of '", path_, "'"));
}

}  // namespace offkey::hsm::pkcs11
