# shellcheck shell=bash
# Shell side of the secret ledger (secret_ledger.h): shell tests source this file and
# record what they must never find in a log; tools/logscan.py searches every test's logs
# and outputs for each recorded secret. Needs TEST_UNDECLARED_OUTPUTS_DIR or TEST_TMPDIR.
ledger="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}/secrets.ledger"

# record_secret WHAT < bytes: adds the bytes read from standard input.
record_secret() {
  printf '%s %s\n' "$1" "$(od -An -v -tx1 | tr -d ' \n')" >>"$ledger"
}

# record_key_secret WHAT FILE: the private scalar of the EC key in the PEM file FILE.
record_key_secret() {
  printf '%s key.priv %s\n' "$1" "$(openssl pkey -in "$2" -noout -text |
    awk '/^priv:/ {on = 1; next} /^[a-zA-Z]/ {on = 0} on' | tr -d ' :\n')" >>"$ledger"
}

# record_dev_state_secrets DIR: the PINs and the private scalars of the P-256 keys that
# offkeyd --dev keeps in its state directory DIR.
record_dev_state_secrets() {
  local pin key
  for pin in user so; do tr -d '\n' <"$1/$pin.pin" | record_secret "$pin PIN"; done
  for key in ca server terminator admin; do record_key_secret "$key" "$1/$key.key"; done
}
