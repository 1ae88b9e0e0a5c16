#include "hsm/pkcs11/testing/fault_control.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "hsm/pkcs11/testing/softhsm.h"

namespace offkey::hsm::pkcs11::testing {
namespace {

// Aborts the test binary on a misuse that is a bug in the test, not an outcome.
void Check(int result, const std::string& function) {
  if (result != 0) {
    fprintf(stderr, "libfault_pkcs11: unknown PKCS#11 function '%s'\n", function.c_str());
    abort();
  }
}

}  // namespace

std::string FaultModulePath() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir ? srcdir : ".",
                      "/offkey/hsm/pkcs11/testing/libfault_pkcs11.so");
}

absl::StatusOr<FaultControl> FaultControl::Load() {
  setenv("OFFKEY_REAL_PKCS11_MODULE", SoftHsmModulePath().c_str(), 1);
  const std::string path = FaultModulePath();
  // Module::Load opens it with RTLD_LOCAL too; dlopen returns the same copy to both.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot load ", path, ": ", dlerror()));
  }
  FaultControl control;
  bool missing = false;
  auto resolve = [&](auto* out, const char* name) {
    *out = reinterpret_cast<std::remove_pointer_t<decltype(out)>>(dlsym(handle, name));
    if (*out == nullptr) missing = true;
  };
  resolve(&control.set_, "OffkeyFaultSet");
  resolve(&control.set_latency_, "OffkeyFaultSetLatency");
  resolve(&control.hang_, "OffkeyFaultHang");
  resolve(&control.release_, "OffkeyFaultRelease");
  resolve(&control.clear_, "OffkeyFaultClear");
  resolve(&control.calls_, "OffkeyFaultCalls");
  resolve(&control.injected_, "OffkeyFaultInjected");
  resolve(&control.in_flight_, "OffkeyFaultInFlight");
  resolve(&control.overlaps_, "OffkeyFaultLifecycleOverlaps");
  if (missing) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " lacks the fault control functions"));
  }
  control.Clear();
  return control;
}

void FaultControl::Fail(const std::string& function, CK_RV rv, double rate,
                        uint64_t count, uint64_t window_ms) const {
  Check(set_(function.c_str(), rv, rate, count, window_ms), function);
}

void FaultControl::Delay(const std::string& function, uint64_t latency_ms, double rate,
                         uint64_t count, uint64_t window_ms) const {
  Check(set_latency_(function.c_str(), latency_ms, rate, count, window_ms), function);
}

void FaultControl::Hang(const std::string& function) const {
  Check(hang_(function.c_str()), function);
}

void FaultControl::Release() const { release_(); }
void FaultControl::Clear() const { clear_(); }
uint64_t FaultControl::Calls(const std::string& function) const {
  return calls_(function.c_str());
}
uint64_t FaultControl::Injected(const std::string& function) const {
  return injected_(function.c_str());
}
int FaultControl::InFlight() const { return in_flight_(); }
uint64_t FaultControl::LifecycleOverlaps() const { return overlaps_(); }

}  // namespace offkey::hsm::pkcs11::testing
