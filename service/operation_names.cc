#include "service/operation_names.h"

namespace offkey::service {

absl::string_view OperationName(offkey::v1::Operation op) {
  switch (op) {
    case offkey::v1::SIGN:
      return "sign";
    case offkey::v1::DECRYPT_PREMASTER:
      return "decrypt-premaster";
    case offkey::v1::DERIVE_MASTER_SECRET:
      return "derive-master-secret";
    case offkey::v1::VERIFY_CLIENT:
      return "verify-client";
    case offkey::v1::GET_CERTIFICATE:
      return "get-certificate";
    case offkey::v1::LIST_KEYS:
      return "list-keys";
    case offkey::v1::GET_TICKET_KEYS:
      return "get-ticket-keys";
    case offkey::v1::SEAL_TICKET:
      return "seal-ticket";
    case offkey::v1::UNSEAL_TICKET:
      return "unseal-ticket";
    default:
      return "unknown";
  }
}

}  // namespace offkey::service
