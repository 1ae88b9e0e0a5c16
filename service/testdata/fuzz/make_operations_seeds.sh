#!/bin/bash
# Makes the seed corpus of operations_fuzz (run once; the results are checked in): a
# caller byte, then a PipelineRequest in wire form (protoc --encode of the text below).
set -euo pipefail
cd "$(dirname "$0")"
root=../../../proto
tls13_server=$(python3 -c 'print("\\040" * 64 + "TLS 1.3, server CertificateVerify\\000" + "\\102" * 32)')
seed() {  # name caller-byte text
  { printf "\\x$2"; protoc -I"$root" --encode=offkey.v1.PipelineRequest \
      offkey/v1/key_service.proto <<<"$3"; } >operations/$1
}
mkdir -p operations
seed sign_p256_tls13 00 "sign { key { name: \"p256\" } scheme: ECDSA_SECP256R1_SHA256
  context { version: TLS_1_3 } message: \"$tls13_server\" }"
seed sign_rsa_pss_tls13 00 "sign { key { name: \"rsa\" } scheme: RSA_PSS_RSAE_SHA256
  context { version: TLS_1_3 } message: \"$tls13_server\" }"
seed sign_general_any 00 "sign { key { name: \"general\" } scheme: ECDSA_SECP256R1_SHA256
  message: \"any message at all\" }"
seed decrypt_premaster_rsa 00 "decrypt_premaster { key { name: \"rsa\" }
  context { version: TLS_1_2 } client_version: 771 ciphertext: \"$(printf '\\%03o' $(seq 1 200))\" }"
seed derive_master_secret_ems 00 "derive_master_secret { key { name: \"rsa\" }
  context { version: TLS_1_2 } client_version: 771 prf_hash: PRF_SHA256
  ciphertext: \"\\001\\002\\003\" session_hash: \"$(printf '\\%03o' $(seq 1 32))\" }"
seed derive_master_secret_randoms 00 "derive_master_secret { key { name: \"rsa\" }
  client_version: 771 prf_hash: PRF_SHA384 ciphertext: \"\\377\"
  randoms { client_random: \"$(printf '\\%03o' $(seq 1 32))\"
            server_random: \"$(printf '\\%03o' $(seq 33 64))\" } }"
seed verify_client 02 "verify_client { trust_bundle: \"clients\" scheme: ED25519
  context { version: TLS_1_3 } certificate_chain: \"\\060\\003\\002\\001\\000\"
  signed_content: \"content\" signature: \"signature\" }"
seed get_certificate_stranger 01 "get_certificate { key { name: \"public\" } }"
seed list_keys_edge 00 "id: 7"
