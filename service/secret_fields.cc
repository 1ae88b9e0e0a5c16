#include "service/secret_fields.h"

#include "base/secret_bytes.h"

namespace offkey::service {

void WipeSecrets(offkey::v1::DecryptPremasterResponse* message) {
  WipeString(message->mutable_premaster());
}

void WipeSecrets(offkey::v1::DeriveMasterSecretResponse* message) {
  WipeString(message->mutable_master_secret());
}

void WipeSecrets(offkey::v1::PipelineResponse* message) {
  if (message->has_decrypt_premaster()) WipeSecrets(message->mutable_decrypt_premaster());
  if (message->has_derive_master_secret()) {
    WipeSecrets(message->mutable_derive_master_secret());
  }
}

void WipeSecrets(offkey::v1::ImportKeyRequest* message) {
  WipeString(message->mutable_private_key());
  WipeString(message->mutable_passphrase());
}

}  // namespace offkey::service
