// Names of the data-plane operations, as audit lines, metrics and messages print them.
#ifndef OFFKEY_SERVICE_OPERATION_NAMES_H_
#define OFFKEY_SERVICE_OPERATION_NAMES_H_

#include "absl/strings/string_view.h"
#include "offkey/v1/config.pb.h"

namespace offkey::service {

// "sign", "decrypt-premaster", "derive-master-secret", "verify-client",
// "get-certificate", "list-keys", "get-ticket-keys", "seal-ticket", "unseal-ticket";
// "unknown" for any other value.
absl::string_view OperationName(offkey::v1::Operation op);

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_OPERATION_NAMES_H_
