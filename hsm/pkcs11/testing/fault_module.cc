// libfault_pkcs11.so: a PKCS#11 module that forwards every call to a real one (SoftHSM2)
// and injects the faults a test asks for: an error code, added latency, or a hang, on
// one function or on all of them, with a probability, for a number of calls or for a
// time window. Tests only. Every function is safe to call from any thread.
//
//   OFFKEY_REAL_PKCS11_MODULE   the module to forward to (default: SoftHSM2)
//   OFFKEY_FAULT_CONTROL_FILE   optional: a text file of rules (below), so a test can
//                               drive faults in another process (offkeyd)
//
// The function "*" means every function that touches a slot, token, session or object:
// all but C_Initialize, C_Finalize, C_GetInfo and C_GetFunctionList.
//
// In-process control: resolve these with dlsym on the same loaded module (dlopen the
// module path with RTLD_NOLOAD after the store has loaded it). Functions taking a
// function name return 0, or -1 for a name that is not a PKCS#11 function.
//
//   int OffkeyFaultSet(const char* function, CK_RV rv, double rate, uint64_t count,
//                      uint64_t window_ms)
//       Calls to `function` return `rv` without reaching the real module, each with
//       probability `rate` (0..1], for the next `count` injections (0: no limit), for
//       `window_ms` milliseconds from now (0: until cleared). Calls that end an
//       operation (C_Sign, C_Decrypt, C_*Final, ...) do reach it, and their result is
//       replaced, so the operation ends as PKCS#11 says a failed call ends it.
//   int OffkeyFaultSetLatency(const char* function, uint64_t latency_ms, double rate,
//                             uint64_t count, uint64_t window_ms)
//       Calls to `function` sleep `latency_ms` first, then go on (to the real module or
//       to an injected error).
//   int OffkeyFaultHang(const char* function)
//       Calls to `function` block until OffkeyFaultRelease or OffkeyFaultClear, then go
//       on.
//   void OffkeyFaultRelease()       ends every hang (rules and calls blocked in them)
//   void OffkeyFaultClear()         removes every rule set through these functions and
//                                   releases hung calls
//   uint64_t OffkeyFaultCalls(const char* function)     calls entered ("*": all)
//   uint64_t OffkeyFaultInjected(const char* function)  calls given an injected error
//   int OffkeyFaultInFlight()       calls inside the module now (C_Initialize and
//                                   C_Finalize not counted)
//   uint64_t OffkeyFaultLifecycleOverlaps()
//       How often C_Initialize or C_Finalize ran while another call was inside the
//       module (either one entering while the other was in it). PKCS#11 leaves that
//       undefined and SoftHSM2 frees state under the other call: it must stay 0.
//
// Control file: when OFFKEY_FAULT_CONTROL_FILE is set, every call checks the file (stat)
// and, when it changed (modification time, size or inode) or vanished, replaces the
// file's rules with its new contents; a missing or empty file means no file rules, and
// hangs from the file end when their line goes. Windows start when the file is read.
// Replace the file atomically (write another file, rename it over) so no call reads half
// a file. One rule a line, '#' starts a comment:
//
//   error <function|*> <CKR_NAME|number> [rate=R] [count=N] [window_ms=W]
//   latency <function|*> <milliseconds> [rate=R] [count=N] [window_ms=W]
//   hang <function|*>
//
// Lines that do not parse are ignored and reported once on stderr. Rules of both
// sources apply together: latencies add up, hangs wait, then the first error rule that
// fires decides the result.
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hsm/pkcs11/pkcs11.h"
#include "hsm/pkcs11/testing/real_module.h"

namespace {

#define OFFKEY_PKCS11_FUNCTIONS(X) \
  X(C_Initialize)                  \
  X(C_Finalize)                    \
  X(C_GetInfo)                     \
  X(C_GetFunctionList)             \
  X(C_GetSlotList)                 \
  X(C_GetSlotInfo)                 \
  X(C_GetTokenInfo)                \
  X(C_GetMechanismList)            \
  X(C_GetMechanismInfo)            \
  X(C_InitToken)                   \
  X(C_InitPIN)                     \
  X(C_SetPIN)                      \
  X(C_OpenSession)                 \
  X(C_CloseSession)                \
  X(C_CloseAllSessions)            \
  X(C_GetSessionInfo)              \
  X(C_GetOperationState)           \
  X(C_SetOperationState)           \
  X(C_Login)                       \
  X(C_Logout)                      \
  X(C_CreateObject)                \
  X(C_CopyObject)                  \
  X(C_DestroyObject)               \
  X(C_GetObjectSize)               \
  X(C_GetAttributeValue)           \
  X(C_SetAttributeValue)           \
  X(C_FindObjectsInit)             \
  X(C_FindObjects)                 \
  X(C_FindObjectsFinal)            \
  X(C_EncryptInit)                 \
  X(C_Encrypt)                     \
  X(C_EncryptUpdate)               \
  X(C_EncryptFinal)                \
  X(C_DecryptInit)                 \
  X(C_Decrypt)                     \
  X(C_DecryptUpdate)               \
  X(C_DecryptFinal)                \
  X(C_DigestInit)                  \
  X(C_Digest)                      \
  X(C_DigestUpdate)                \
  X(C_DigestKey)                   \
  X(C_DigestFinal)                 \
  X(C_SignInit)                    \
  X(C_Sign)                        \
  X(C_SignUpdate)                  \
  X(C_SignFinal)                   \
  X(C_SignRecoverInit)             \
  X(C_SignRecover)                 \
  X(C_VerifyInit)                  \
  X(C_Verify)                      \
  X(C_VerifyUpdate)                \
  X(C_VerifyFinal)                 \
  X(C_VerifyRecoverInit)           \
  X(C_VerifyRecover)               \
  X(C_DigestEncryptUpdate)         \
  X(C_DecryptDigestUpdate)         \
  X(C_SignEncryptUpdate)           \
  X(C_DecryptVerifyUpdate)         \
  X(C_GenerateKey)                 \
  X(C_GenerateKeyPair)             \
  X(C_WrapKey)                     \
  X(C_UnwrapKey)                   \
  X(C_DeriveKey)                   \
  X(C_SeedRandom)                  \
  X(C_GenerateRandom)              \
  X(C_GetFunctionStatus)           \
  X(C_CancelFunction)              \
  X(C_WaitForSlotEvent)

enum Function : int {
#define OFFKEY_ENUM(name) k_##name,
  OFFKEY_PKCS11_FUNCTIONS(OFFKEY_ENUM)
#undef OFFKEY_ENUM
      kFunctionCount
};

constexpr const char* kFunctionNames[] = {
#define OFFKEY_NAME(name) #name,
    OFFKEY_PKCS11_FUNCTIONS(OFFKEY_NAME)
#undef OFFKEY_NAME
};

constexpr int kAll = -1;  // The function "*".

// Module-level calls: outside "*", and the calls whose overlap with others is tracked.
bool IsLifecycle(int f) { return f == k_C_Initialize || f == k_C_Finalize; }
bool InAll(int f) {
  return !IsLifecycle(f) && f != k_C_GetInfo && f != k_C_GetFunctionList;
}

// Calls that end a cryptographic operation whatever they return (PKCS#11 v2.40 5.2:
// C_Sign "always terminates the active signing operation unless it returns
// CKR_BUFFER_TOO_SMALL or is a successful call to determine the length", and so on).
// An error injected into one of them still makes the real call, so the real module's
// operation ends as a failing HSM's would, and the caller's next C_*Init works.
bool EndsOperation(int f) {
  switch (f) {
    case k_C_Encrypt:
    case k_C_EncryptFinal:
    case k_C_Decrypt:
    case k_C_DecryptFinal:
    case k_C_Digest:
    case k_C_DigestFinal:
    case k_C_Sign:
    case k_C_SignFinal:
    case k_C_SignRecover:
    case k_C_Verify:
    case k_C_VerifyFinal:
    case k_C_VerifyRecover:
      return true;
    default:
      return false;
  }
}

// The function index of `name`, kAll for "*", or -2 if unknown.
int FunctionIndex(const char* name) {
  if (name == nullptr) return -2;
  if (strcmp(name, "*") == 0) return kAll;
  for (int i = 0; i < kFunctionCount; ++i) {
    if (strcmp(name, kFunctionNames[i]) == 0) return i;
  }
  return -2;
}

using Clock = std::chrono::steady_clock;

struct Rule {
  enum class Kind { kError, kLatency, kHang };
  Kind kind = Kind::kError;
  int function = kAll;
  CK_RV rv = CKR_OK;
  std::chrono::milliseconds latency{0};
  double rate = 1.0;
  uint64_t remaining = 0;  // Injections left; 0: no limit.
  bool limited = false;
  Clock::time_point until = Clock::time_point::max();
  bool from_file = false;
  bool Matches(int f) const { return function == f || (function == kAll && InAll(f)); }
};

CK_FUNCTION_LIST* real = nullptr;
CK_FUNCTION_LIST wrapped;

std::mutex mu;
std::condition_variable hang_cv;
std::vector<Rule> rules;     // Guarded by mu.
uint64_t release_count = 0;  // Guarded by mu; bumped to end hangs.
struct ControlFileState {
  bool present = false;
  struct timespec mtime = {};
  off_t size = 0;
  ino_t inode = 0;
};
ControlFileState control_file;  // Guarded by mu.

std::atomic<uint64_t> calls[kFunctionCount];
std::atomic<uint64_t> injected[kFunctionCount];
std::atomic<int> in_flight{0};
std::atomic<int> lifecycle_in_flight{0};
std::atomic<uint64_t> lifecycle_overlaps{0};

bool Roll(double rate) {
  if (rate >= 1.0) return true;
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng) < rate;
}

// CKR names accepted in the control file (the ones tests inject), or a number.
bool ParseRv(const std::string& text, CK_RV* rv) {
  static const struct {
    const char* name;
    CK_RV rv;
  } kNames[] = {
      {"CKR_OK", CKR_OK},
      {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
      {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
      {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
      {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
      {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
      {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
      {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
      {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
      {"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
      {"CKR_PIN_INCORRECT", CKR_PIN_INCORRECT},
      {"CKR_PIN_LOCKED", CKR_PIN_LOCKED},
      {"CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID},
      {"CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID},
      {"CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED},
  };
  for (const auto& n : kNames) {
    if (text == n.name) {
      *rv = n.rv;
      return true;
    }
  }
  char* end = nullptr;
  unsigned long value = strtoul(text.c_str(), &end, 0);
  if (text.empty() || *end != '\0') return false;
  *rv = value;
  return true;
}

// One control-file line as a rule; false if it does not parse.
bool ParseLine(const std::string& line, Rule* rule) {
  std::istringstream in(line);
  std::string kind, function;
  if (!(in >> kind >> function)) return false;
  rule->function = FunctionIndex(function.c_str());
  if (rule->function == -2) return false;
  rule->from_file = true;
  if (kind == "hang") {
    rule->kind = Rule::Kind::kHang;
    return true;
  }
  std::string value;
  if (!(in >> value)) return false;
  if (kind == "error") {
    rule->kind = Rule::Kind::kError;
    if (!ParseRv(value, &rule->rv)) return false;
  } else if (kind == "latency") {
    rule->kind = Rule::Kind::kLatency;
    char* end = nullptr;
    rule->latency = std::chrono::milliseconds(strtoull(value.c_str(), &end, 10));
    if (*end != '\0') return false;
  } else {
    return false;
  }
  std::string option;
  while (in >> option) {
    const size_t eq = option.find('=');
    if (eq == std::string::npos) return false;
    const std::string key = option.substr(0, eq), number = option.substr(eq + 1);
    char* end = nullptr;
    if (key == "rate") {
      rule->rate = strtod(number.c_str(), &end);
    } else if (key == "count") {
      rule->remaining = strtoull(number.c_str(), &end, 10);
      rule->limited = rule->remaining > 0;
    } else if (key == "window_ms") {
      const uint64_t ms = strtoull(number.c_str(), &end, 10);
      if (ms > 0) rule->until = Clock::now() + std::chrono::milliseconds(ms);
    } else {
      return false;
    }
    if (number.empty() || *end != '\0') return false;
  }
  return true;
}

// Re-reads the control file if it changed. Requires mu.
void RefreshControlFile() {
  const char* path = getenv("OFFKEY_FAULT_CONTROL_FILE");
  if (path == nullptr) return;
  struct stat st;
  ControlFileState now;
  if (stat(path, &st) == 0) {
    now.present = true;
    now.mtime = st.st_mtim;
    now.size = st.st_size;
    now.inode = st.st_ino;
  }
  if (now.present == control_file.present && now.size == control_file.size &&
      now.inode == control_file.inode && now.mtime.tv_sec == control_file.mtime.tv_sec &&
      now.mtime.tv_nsec == control_file.mtime.tv_nsec) {
    return;
  }
  control_file = now;
  bool had_hang = false;
  std::vector<Rule> kept;
  for (const Rule& r : rules) {
    if (!r.from_file) {
      kept.push_back(r);
    } else if (r.kind == Rule::Kind::kHang) {
      had_hang = true;
    }
  }
  rules = std::move(kept);
  if (had_hang) {
    ++release_count;
    hang_cv.notify_all();
  }
  if (!now.present) return;
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Rule rule;
    if (ParseLine(line, &rule)) {
      rules.push_back(rule);
    } else {
      fprintf(stderr, "libfault_pkcs11: ignoring control line '%s'\n", line.c_str());
    }
  }
}

// Applies the rules for a call to `f`: sleeps, hangs, and returns true with *rv set if
// an error is to be returned instead of calling the real module.
bool Inject(int f, CK_RV* rv) {
  std::chrono::milliseconds delay{0};
  bool hang = false, fail = false;
  uint64_t hang_release = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    RefreshControlFile();
    const Clock::time_point now = Clock::now();
    for (Rule& r : rules) {
      if (!r.Matches(f) || now >= r.until || (r.limited && r.remaining == 0)) continue;
      if (r.kind == Rule::Kind::kError && fail) continue;
      if (!Roll(r.rate)) continue;
      if (r.limited) --r.remaining;
      switch (r.kind) {
        case Rule::Kind::kLatency:
          delay += r.latency;
          break;
        case Rule::Kind::kHang:
          hang = true;
          break;
        case Rule::Kind::kError:
          fail = true;
          *rv = r.rv;
          break;
      }
    }
    hang_release = release_count;
  }
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  if (hang) {
    std::unique_lock<std::mutex> lock(mu);
    // The control file is reread here too: when every caller hangs, no new call comes
    // to notice that the hang's line went.
    while (release_count == hang_release) {
      hang_cv.wait_for(lock, std::chrono::milliseconds(20));
      if (release_count == hang_release) RefreshControlFile();
    }
  }
  if (fail) ++injected[f];
  return fail;
}

// Counts a call in the module for its duration and notes lifecycle overlaps. The
// counters are sequentially consistent, so of a lifecycle call and another call that
// overlap, at least one sees the other.
class InModule {
 public:
  explicit InModule(int f) : lifecycle_(IsLifecycle(f)) {
    ++calls[f];
    if (lifecycle_) {
      ++lifecycle_in_flight;
      if (in_flight.load() > 0) ++lifecycle_overlaps;
    } else {
      ++in_flight;
      if (lifecycle_in_flight.load() > 0) ++lifecycle_overlaps;
    }
  }
  ~InModule() {
    if (lifecycle_) {
      --lifecycle_in_flight;
    } else {
      --in_flight;
    }
  }
  InModule(const InModule&) = delete;
  InModule& operator=(const InModule&) = delete;

 private:
  const bool lifecycle_;
};

template <int kIndex, typename F, F CK_FUNCTION_LIST::*Field>
struct Wrap;

template <int kIndex, typename... A, CK_RV (*CK_FUNCTION_LIST::*Field)(A...)>
struct Wrap<kIndex, CK_RV (*)(A...), Field> {
  static CK_RV Call(A... args) {
    InModule in_module(kIndex);
    CK_RV rv = CKR_OK;
    if (!Inject(kIndex, &rv)) return (real->*Field)(args...);
    if (EndsOperation(kIndex)) (real->*Field)(args...);  // Result replaced by `rv`.
    return rv;
  }
};

int AddRule(const char* function, const Rule& base) {
  const int f = FunctionIndex(function);
  if (f == -2) return -1;
  Rule rule = base;
  rule.function = f;
  std::lock_guard<std::mutex> lock(mu);
  rules.push_back(rule);
  return 0;
}

Rule Limits(double rate, uint64_t count, uint64_t window_ms) {
  Rule rule;
  rule.rate = rate;
  rule.remaining = count;
  rule.limited = count > 0;
  if (window_ms > 0) rule.until = Clock::now() + std::chrono::milliseconds(window_ms);
  return rule;
}

uint64_t Sum(const std::atomic<uint64_t>* counters, const char* function) {
  const int f = FunctionIndex(function);
  if (f >= 0) return counters[f].load();
  uint64_t total = 0;
  if (f == kAll) {
    for (int i = 0; i < kFunctionCount; ++i) total += counters[i].load();
  }
  return total;
}

}  // namespace

#define OFFKEY_EXPORT extern "C" __attribute__((visibility("default")))

OFFKEY_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST** out);

OFFKEY_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST** out) {
  if (out == nullptr) return CKR_ARGUMENTS_BAD;
  static const CK_RV loaded = [] {
    real = offkey::hsm::pkcs11::testing::RealModule();
    if (real == nullptr) return static_cast<CK_RV>(CKR_GENERAL_ERROR);
    wrapped.version = real->version;
#define OFFKEY_WRAP(name) \
  wrapped.name = &Wrap<k_##name, decltype(real->name), &CK_FUNCTION_LIST::name>::Call;
    OFFKEY_PKCS11_FUNCTIONS(OFFKEY_WRAP)
#undef OFFKEY_WRAP
    wrapped.C_GetFunctionList = &C_GetFunctionList;
    return static_cast<CK_RV>(CKR_OK);
  }();
  if (loaded != CKR_OK) return loaded;
  *out = &wrapped;
  return CKR_OK;
}

OFFKEY_EXPORT int OffkeyFaultSet(const char* function, CK_RV rv, double rate,
                                 uint64_t count, uint64_t window_ms) {
  Rule rule = Limits(rate, count, window_ms);
  rule.kind = Rule::Kind::kError;
  rule.rv = rv;
  return AddRule(function, rule);
}

OFFKEY_EXPORT int OffkeyFaultSetLatency(const char* function, uint64_t latency_ms,
                                        double rate, uint64_t count, uint64_t window_ms) {
  Rule rule = Limits(rate, count, window_ms);
  rule.kind = Rule::Kind::kLatency;
  rule.latency = std::chrono::milliseconds(latency_ms);
  return AddRule(function, rule);
}

OFFKEY_EXPORT int OffkeyFaultHang(const char* function) {
  Rule rule;
  rule.kind = Rule::Kind::kHang;
  return AddRule(function, rule);
}

OFFKEY_EXPORT void OffkeyFaultRelease() {
  std::lock_guard<std::mutex> lock(mu);
  std::vector<Rule> kept;
  for (const Rule& r : rules) {
    if (r.kind != Rule::Kind::kHang) kept.push_back(r);
  }
  rules = std::move(kept);
  ++release_count;
  hang_cv.notify_all();
}

OFFKEY_EXPORT void OffkeyFaultClear() {
  std::lock_guard<std::mutex> lock(mu);
  std::vector<Rule> kept;
  for (const Rule& r : rules) {
    if (r.from_file) kept.push_back(r);
  }
  rules = std::move(kept);
  ++release_count;
  hang_cv.notify_all();
}

OFFKEY_EXPORT uint64_t OffkeyFaultCalls(const char* function) {
  return Sum(calls, function);
}

OFFKEY_EXPORT uint64_t OffkeyFaultInjected(const char* function) {
  return Sum(injected, function);
}

OFFKEY_EXPORT int OffkeyFaultInFlight() { return in_flight.load(); }

OFFKEY_EXPORT uint64_t OffkeyFaultLifecycleOverlaps() {
  return lifecycle_overlaps.load();
}
