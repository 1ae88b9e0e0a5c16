// Who is calling: the identity from the peer's client certificate.
#ifndef OFFKEY_SERVICE_CALLER_H_
#define OFFKEY_SERVICE_CALLER_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "grpcpp/grpcpp.h"
#include "service/operations.h"

namespace offkey::service {

// The caller's identity from the peer certificate of `context` by base/identity.h's rule
// (the SPIFFE ID, else "dns:" + DNS SAN, else "cn:" + CN). UNAUTHENTICATED without a
// certificate, unless `allow_plaintext` (development only), when the caller is
// "insecure:anonymous", and when the rule refuses the certificate.
absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase& context,
                                bool allow_plaintext);

// CallerOf with memory: parsing a certificate costs far more than an EC signature, and a
// terminator presents the same certificate on every call. Bounded; thread-safe.
class IdentityCache {
 public:
  absl::StatusOr<Caller> Get(const grpc::ServerContextBase& context,
                             bool allow_plaintext);

 private:
  static constexpr size_t kMaxEntries = 4096;
  offkey::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> identities_ ABSL_GUARDED_BY(mu_);
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_CALLER_H_
