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

namespace {
void WipeTicketKey(offkey::v1::TicketKey* key) {
  WipeString(key->mutable_name());
  WipeString(key->mutable_aes_key());
  WipeString(key->mutable_hmac_key());
}
}  // namespace

void WipeSecrets(offkey::v1::GetTicketKeysResponse* message) {
  if (message->has_previous()) WipeTicketKey(message->mutable_previous());
  if (message->has_current()) WipeTicketKey(message->mutable_current());
  if (message->has_next()) WipeTicketKey(message->mutable_next());
}

void WipeSecrets(offkey::v1::SealTicketRequest* message) {
  WipeString(message->mutable_plaintext());
}

void WipeSecrets(offkey::v1::UnsealTicketResponse* message) {
  WipeString(message->mutable_plaintext());
}

}  // namespace offkey::service
