#!/bin/bash
# Makes the fixed PKI and seed corpus of client_verifier_fuzz (run once; the results are
# checked in). Prints the PEM constants client_verifier_fuzz.cc embeds (CA certificate
# and the two CRLs); writes the seeds into ./client_verifier. Needs openssl and python3.
# Certificates are valid for 20 years from the run, CRLs for 10; the fuzzer verifies at
# a fixed time inside both (kNow in client_verifier_fuzz.cc).
set -euo pipefail
cd "$(dirname "$0")"
out=$PWD/client_verifier
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
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid
X

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=offkey fuzz clients CA" -days 7300 \
  -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out int.key 2>/dev/null
openssl req -new -key int.key -subj "/CN=offkey fuzz intermediate" -out int.csr
openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 7300 \
  -extfile ca.ext -out int.pem 2>/dev/null

leaf() {  # name keyalg-args issuer serial san
  openssl genpkey $2 -out $1.key 2>/dev/null
  openssl req -new -key $1.key -subj "/CN=$1" -out $1.csr
  { cat leaf.ext; echo "subjectAltName=$5"; } >$1.ext
  openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key -set_serial $4 -days 7300 \
    -extfile $1.ext -out $1.pem 2>/dev/null
  openssl x509 -in $1.pem -outform DER -out $1.der
}
leaf edge-ec "-algorithm EC -pkeyopt ec_paramgen_curve:P-256" int 10 \
  "DNS:edge-1.example.com,URI:spiffe://example.org/edge/1,IP:192.0.2.1"
leaf edge-rsa "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" ca 11 \
  "DNS:edge-2.example.com,email:ops@example.com"
leaf edge-ed "-algorithm ED25519" ca 12 "URI:spiffe://example.org/edge/3"
openssl x509 -in int.pem -outform DER -out int.der

# CRLs: the CA's revokes edge-rsa; the intermediate's revokes nothing.
crl() {  # issuer revoked...
  local issuer=$1 d=db-$1; shift
  mkdir -p $d; : >$d/index; echo 01 >$d/crlnumber
  cat >$d/cnf <<X
[ca]
default_ca=c
[c]
database=$d/index
crlnumber=$d/crlnumber
default_md=sha256
default_crl_days=3650
X
  for r in "$@"; do
    openssl ca -config $d/cnf -cert $issuer.pem -keyfile $issuer.key \
      -revoke $r.pem 2>/dev/null
  done
  openssl ca -config $d/cnf -cert $issuer.pem -keyfile $issuer.key -gencrl \
    -out $issuer.crl 2>/dev/null
}
crl ca edge-rsa
crl int

sign() {  # key scheme-kind content-file
  case $2 in
    ecdsa) openssl dgst -sha256 -sign $1.key -out sig $3 ;;
    pss) openssl dgst -sha256 -sign $1.key -sigopt rsa_padding_mode:pss \
           -sigopt rsa_pss_saltlen:digest -out sig $3 ;;
    pkcs1) openssl dgst -sha256 -sign $1.key -out sig $3 ;;
    ed) openssl pkeyutl -sign -rawin -inkey $1.key -in $3 -out sig ;;
  esac
}
# TLS 1.3 client CertificateVerify input (RFC 8446 4.4.3) over a fixed transcript hash.
python3 -c 'import sys; sys.stdout.buffer.write(b" "*64 + b"TLS 1.3, client CertificateVerify\0" + bytes(range(32)))' >tls13
# TLS 1.2: the handshake messages so far (any bytes; here a stand-in).
python3 -c 'import sys; sys.stdout.buffer.write(bytes([1,0,0,4,3,3,0,0]) + bytes(range(64)))' >tls12

# The fuzzer's input (client_verifier_fuzz.cc): version, bundle, scheme, then 16-bit
# length-prefixed signed_content, signature and certificates.
seed() {  # name version bundle scheme content certs...
  local name=$1 version=$2 bundle=$3 scheme=$4 content=$5; shift 5
  python3 - "$out/$name" $version $bundle $scheme $content sig "$@" <<'X'
import sys
path, version, bundle, scheme, *files = sys.argv[1:]
data = bytes([int(version), int(bundle)]) + int(scheme, 16).to_bytes(2, "big")
for f in files:
    b = open(f, "rb").read()
    data += len(b).to_bytes(2, "big") + b
open(path, "wb").write(data)
X
}
mkdir -p "$out"
sign edge-ec ecdsa tls13;  seed ec_chain_tls13 1 0 0403 tls13 edge-ec.der int.der
seed ec_chain_crl_tls13 1 1 0403 tls13 edge-ec.der int.der
sign edge-rsa pss tls13;   seed rsa_pss_tls13 1 0 0804 tls13 edge-rsa.der
seed rsa_revoked_tls13 1 1 0804 tls13 edge-rsa.der
sign edge-rsa pkcs1 tls12; seed rsa_pkcs1_tls12 0 0 0401 tls12 edge-rsa.der
sign edge-ed ed tls13;     seed ed25519_tls13 1 0 0807 tls13 edge-ed.der
seed ed25519_not_allowed 1 2 0807 tls13 edge-ed.der

echo "// CA certificate"; cat ca.pem
echo "// CA CRL"; cat ca.crl
echo "// intermediate CRL"; cat int.crl
