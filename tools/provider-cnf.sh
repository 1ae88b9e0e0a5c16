#!/bin/bash
# Prints an openssl.cnf that loads the default provider and the offkey provider (see
# client/openssl/README.md), for the demo and benchmark scripts.
#
#   tools/provider-cnf.sh MODULE ENDPOINT CA_FILE CERT_FILE KEY_FILE [SERVER_NAME]
#
# OFFKEY_TRANSPORT=stream|unary sets the provider's transport (default: its own).
set -euo pipefail
if [[ $# -lt 5 ]]; then
  sed -n 2,7p "$0" >&2
  exit 2
fi
cat <<EOF_CNF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
alg_section = evp_properties
[provider_sect]
default = default_sect
offkey = offkey_sect
[default_sect]
activate = 1
[offkey_sect]
module = $1
activate = 1
endpoint = $2
tls_ca_file = $3
tls_cert_file = $4
tls_key_file = $5
${6:+server_name = $6}
${OFFKEY_TRANSPORT:+transport = $OFFKEY_TRANSPORT}
[evp_properties]
default_properties = ?provider=default
EOF_CNF
