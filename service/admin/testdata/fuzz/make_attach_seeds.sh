#!/bin/bash
# Makes the fixed key, PKI and seed corpus of attach_certificate_fuzz (run once; the
# results are checked in). Writes the key the fuzzer embeds into
# ./attach_certificate_web_key.pem and the seeds into ./attach_certificate (run it in
# this directory). Needs openssl and python3. Certificates
# are valid for 20 years from the run; the fuzzer's clock is fixed inside that (kNow).
set -euo pipefail
cd "$(dirname "$0")"
out=$PWD/attach_certificate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

cat >ca.ext <<'X'
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
X
cat >leaf.ext <<'X'
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:www.example.com
X
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=offkey fuzz server CA" -days 7300 -out ca.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out int.key 2>/dev/null
openssl req -new -key int.key -subj "/CN=offkey fuzz server intermediate" -out int.csr
openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 7300 \
  -extfile ca.ext -out int.pem 2>/dev/null
# The key the fuzzer imports as "web", and its certificate from the intermediate.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out web.key 2>/dev/null
openssl req -new -key web.key -subj "/CN=www.example.com" -out web.csr
openssl x509 -req -in web.csr -CA int.pem -CAkey int.key -set_serial 3 -days 7300 \
  -extfile leaf.ext -out web.pem 2>/dev/null
for c in ca int web; do openssl x509 -in $c.pem -outform DER -out $c.der; done

# The fuzzer's input (attach_certificate_fuzz.cc): a flags byte, then the PEM chain or
# the 16-bit length-prefixed DER certificates.
der_seed() {  # name flags certs...
  local name=$1 flags=$2; shift 2
  python3 - "$out/$name" $flags "$@" <<'X'
import sys
path, flags, *files = sys.argv[1:]
data = bytes([int(flags)])
for f in files:
    b = open(f, "rb").read()
    data += len(b).to_bytes(2, "big") + b
open(path, "wb").write(data)
X
}
mkdir -p "$out"
der_seed der_chain 0 web.der int.der ca.der
der_seed der_leaf_by_id 8 web.der
der_seed der_other_key 4 web.der int.der
{ printf '\x01'; cat web.pem int.pem; } >"$out/pem_chain"
{ printf '\x03'; cat web.pem int.pem ca.pem; } >"$out/pem_chain_force"

openssl pkey -in web.key -out "$out/../attach_certificate_web_key.pem"
