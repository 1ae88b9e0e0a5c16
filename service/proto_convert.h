// Conversions between the service's internal types and the wire messages.
#ifndef OFFKEY_SERVICE_PROTO_CONVERT_H_
#define OFFKEY_SERVICE_PROTO_CONVERT_H_

#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/support/status.h"
#include "hsm/key_types.h"
#include "offkey/v1/common.pb.h"
#include "service/key_catalog.h"

namespace offkey::service {

offkey::v1::KeyAlgorithm ToProtoAlgorithm(hsm::KeyAlgorithm algorithm);
hsm::KeyAlgorithm FromProtoAlgorithm(offkey::v1::KeyAlgorithm algorithm);

// The public description of a key (never private material).
offkey::v1::KeyInfo ToProtoKeyInfo(const KeyRecord& key);

// Subject, issuer, SANs, validity, SHA-256 and serial of a DER certificate.
absl::StatusOr<offkey::v1::CertificateSummary> SummarizeCertificate(
    absl::string_view der);

// A key reference for logs: the name, or "id:<hex>", "ski:<hex>", "cert:<hex>".
std::string KeyRefText(const offkey::v1::KeyRef& ref);

// absl::Status to grpc::Status: same code, same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_PROTO_CONVERT_H_
