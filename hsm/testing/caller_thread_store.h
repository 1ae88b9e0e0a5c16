// A ForwardingStore that counts the calls made from the thread that created it: tests
// play the request path on that thread and check it never reaches the store, while
// background threads (a catalog's refresher) are not counted.
#ifndef OFFKEY_HSM_TESTING_CALLER_THREAD_STORE_H_
#define OFFKEY_HSM_TESTING_CALLER_THREAD_STORE_H_

#include <atomic>
#include <thread>

#include "hsm/testing/forwarding_store.h"

namespace offkey::hsm::testing {

class CallerThreadStore : public ForwardingStore {
 public:
  explicit CallerThreadStore(hsm::KeyStore* real)
      : ForwardingStore(real), caller_(std::this_thread::get_id()) {}

  // Calls made so far from the creating thread (every KeyStore method but Sessions()).
  int calls() const { return calls_.load(); }

 protected:
  void BeforeCall() override {
    if (std::this_thread::get_id() == caller_) ++calls_;
  }

 private:
  const std::thread::id caller_;
  std::atomic<int> calls_{0};
};

}  // namespace offkey::hsm::testing

#endif  // OFFKEY_HSM_TESTING_CALLER_THREAD_STORE_H_
