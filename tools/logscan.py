#!/usr/bin/python3
"""Scans every log and output of a test run for the secrets the tests handled.

Tests record each secret they touch (premasters, master secrets, private keys, PINs) in
a ledger, $TEST_UNDECLARED_OUTPUTS_DIR/secrets.ledger (base/testing/secret_ledger.h).
This scan reads every ledger under the Bazel test logs, then looks through every
test.log, test.xml and undeclared output (outputs.zip members included) of the given
targets for any 12-byte window of any secret, as raw bytes, as hex (either case, with or
without ':' or ' ' between bytes) and as base64 (standard or URL alphabet, any
alignment), and for PEM private key blocks. Ledgers themselves are not scanned.

Usage: logscan.py [--require-ledger] TESTLOGS_DIR [LABEL...]
  LABELs (//pkg:name) limit the scan to those targets' logs; without any, every target
  under TESTLOGS_DIR is scanned. Labels may also come one per line on standard input
  when '-' is given.
Exit status: 0 clean, 1 a secret was found (each finding printed), 2 usage or a broken
ledger, or --require-ledger and no ledger found.
"""

import base64
import binascii
import pathlib
import re
import sys
import zipfile

LEDGER = "secrets.ledger"
WINDOW = 12  # bytes; a 12-byte window of a random secret does not occur by chance.
PEM_PRIVATE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
HEX_RUN = re.compile(rb"(?:[0-9a-f]{2}[: ]?){8,}")
B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{11,}")


def windows(data, size):
    """Every `size`-long slice of data (data itself when shorter)."""
    if len(data) <= size:
        return [data]
    return [data[i:i + size] for i in range(len(data) - size + 1)]


def base64_cores(secret):
    """Base64 text that encodes only secret bytes, for each of the three alignments."""
    cores = []
    for skip in range(3):
        text = base64.b64encode(b"\0" * skip + secret)
        first = -(-skip * 8 // 6)  # first character free of the prefix bytes
        core = text[first:len(text) - 4]  # the last quantum may hold padding bits
        if len(core) >= 11:
            cores.append(core)
            cores.append(core.translate(bytes.maketrans(b"+/", b"-_")))
    return cores


class Index:
    """Windows of every secret in every form, mapped back to the secret's label."""

    def __init__(self):
        self.raw = {}  # window length -> {window: label}
        self.hex = {}
        self.b64 = {}
        self.secrets = 0

    @staticmethod
    def _add(table, data, size, label):
        for w in windows(data, size):
            table.setdefault(len(w), {})[w] = label

    def add(self, label, secret):
        self.secrets += 1
        self._add(self.raw, secret, WINDOW, label + " (raw)")
        self._add(self.hex, binascii.hexlify(secret), 2 * WINDOW, label + " (hex)")
        for core in base64_cores(secret):
            self._add(self.b64, core, 16, label + " (base64)")


def slide(table, text):
    """The labels of table windows found anywhere in text."""
    found = set()
    for size, entries in table.items():
        for i in range(len(text) - size + 1):
            hit = entries.get(text[i:i + size])
            if hit is not None:
                found.add(hit)
    return found


def scan(index, data):
    """Labels of the secrets (and PEM keys) that occur in data."""
    found = set()
    if PEM_PRIVATE.search(data):
        found.add("a PEM private key block")
    found |= slide(index.raw, data)
    lower = data.lower()
    for run in HEX_RUN.finditer(lower):
        found |= slide(index.hex, run.group().replace(b":", b"").replace(b" ", b""))
    for run in B64_RUN.finditer(data):
        found |= slide(index.b64, run.group())
    return found


def target_dirs(testlogs, labels):
    if not labels:
        return [p.parent for p in testlogs.rglob("test.log")]
    dirs = []
    for label in labels:
        package, _, name = label.lstrip("/").partition(":")
        dirs.append(testlogs / package / name)
    return dirs


def files_of(directory):
    """(name, bytes) of every log and output below a target's test log directory."""
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name == LEDGER:
            continue
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if pathlib.PurePath(member).name != LEDGER:
                        yield f"{path}:{member}", archive.read(member)
        elif path.name in ("test.log", "test.xml") or "test.outputs" in path.parts:
            yield str(path), path.read_bytes()


def ledgers(testlogs):
    """(source, text) of every ledger under testlogs, loose or zipped."""
    for path in testlogs.rglob(LEDGER):
        yield str(path), path.read_text()
    for path in testlogs.rglob("outputs.zip"):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if pathlib.PurePath(member).name == LEDGER:
                    yield f"{path}:{member}", archive.read(member).decode()


def main(argv):
    require_ledger = "--require-ledger" in argv
    args = [a for a in argv if a != "--require-ledger"]
    if not args or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    testlogs = pathlib.Path(args[0])
    labels = args[1:]
    if labels == ["-"]:
        labels = sys.stdin.read().split()

    index = Index()
    ledger_count = 0
    for source, text in ledgers(testlogs):
        ledger_count += 1
        for number, line in enumerate(text.splitlines(), 1):
            what, _, hexed = line.rpartition(" ")
            try:
                index.add(what, binascii.unhexlify(hexed))
            except (binascii.Error, ValueError):
                print(f"logscan: {source}:{number}: not '<what> <hex>'", file=sys.stderr)
                return 2
    if require_ledger and ledger_count == 0:
        print(f"logscan: no {LEDGER} under {testlogs}; the tests recorded no secrets",
              file=sys.stderr)
        return 2

    findings = scanned = size = 0
    for directory in target_dirs(testlogs, labels):
        for name, data in files_of(directory):
            scanned += 1
            size += len(data)
            for what in sorted(scan(index, data)):
                findings += 1
                print(f"logscan: SECRET FOUND: {what} in {name}")
    print(f"logscan: {scanned} files ({size / 1e6:.1f} MB) scanned for "
          f"{index.secrets} secrets from {ledger_count} ledgers: {findings} found")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
