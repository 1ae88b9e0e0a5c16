// Wiping the secrets that travel in protobuf messages (premasters, master secrets, an
// imported private key and its passphrase, ticket keys and session state) once gRPC is
// done with them, so that freed memory does not keep them. What gRPC itself held (its
// serialized copy, TLS buffers) is freed by gRPC unwiped; this covers offkeyd's own
// copies.
#ifndef OFFKEY_SERVICE_SECRET_FIELDS_H_
#define OFFKEY_SERVICE_SECRET_FIELDS_H_

#include "offkey/v1/key_admin.pb.h"
#include "offkey/v1/key_service.pb.h"

namespace offkey::service {

// Each wipes the secret fields of `message` in place (OPENSSL_cleanse, then cleared) and
// leaves the rest as it was.
void WipeSecrets(offkey::v1::DecryptPremasterResponse* message);
void WipeSecrets(offkey::v1::DeriveMasterSecretResponse* message);
void WipeSecrets(offkey::v1::PipelineResponse* message);
void WipeSecrets(offkey::v1::ImportKeyRequest* message);
// Session tickets: the ticket keys handed out, and session state sealed or opened.
void WipeSecrets(offkey::v1::GetTicketKeysResponse* message);
void WipeSecrets(offkey::v1::SealTicketRequest* message);
void WipeSecrets(offkey::v1::UnsealTicketResponse* message);
// Messages that carry no secret: nothing to do (lets templated call code wipe every
// response it sends).
template <typename Message>
void WipeSecrets(Message*) {}

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_SECRET_FIELDS_H_
