// Test-side handle on libfault_pkcs11.so (fault_module.cc): loads it over SoftHSM2 and
// drives its faults through the functions it exports.
#ifndef OFFKEY_HSM_PKCS11_TESTING_FAULT_CONTROL_H_
#define OFFKEY_HSM_PKCS11_TESTING_FAULT_CONTROL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11::testing {

// The path of libfault_pkcs11.so in the test's runfiles (the target must list it in
// `data`).
std::string FaultModulePath();

// The control functions of the fault module loaded in this process. Cheap to copy;
// every call is thread-safe. See fault_module.cc for what each one does.
class FaultControl {
 public:
  // Points the module at SoftHSM2 (OFFKEY_REAL_PKCS11_MODULE) and loads it (dlopen; a
  // later Module::Load of FaultModulePath() finds the same copy). Clears every rule.
  static absl::StatusOr<FaultControl> Load();

  // `function` is a PKCS#11 function name or "*" (every token function).
  // count 0: no limit; window 0: until cleared.
  void Fail(const std::string& function, CK_RV rv, double rate = 1.0, uint64_t count = 0,
            uint64_t window_ms = 0) const;
  void Delay(const std::string& function, uint64_t latency_ms, double rate = 1.0,
             uint64_t count = 0, uint64_t window_ms = 0) const;
  void Hang(const std::string& function) const;
  void Release() const;
  void Clear() const;

  uint64_t Calls(const std::string& function) const;
  uint64_t Injected(const std::string& function) const;
  int InFlight() const;
  uint64_t LifecycleOverlaps() const;

 private:
  FaultControl() = default;

  int (*set_)(const char*, CK_RV, double, uint64_t, uint64_t) = nullptr;
  int (*set_latency_)(const char*, uint64_t, double, uint64_t, uint64_t) = nullptr;
  int (*hang_)(const char*) = nullptr;
  void (*release_)() = nullptr;
  void (*clear_)() = nullptr;
  uint64_t (*calls_)(const char*) = nullptr;
  uint64_t (*injected_)(const char*) = nullptr;
  int (*in_flight_)() = nullptr;
  uint64_t (*overlaps_)() = nullptr;
};

}  // namespace offkey::hsm::pkcs11::testing

#endif  // OFFKEY_HSM_PKCS11_TESTING_FAULT_CONTROL_H_
