#!/usr/bin/env bash
# Run sigstore-conformance's own pytest harness, offline, against the
# `conformance` example (minipull's verification core).
#
#   examples/conformance-harness.sh [SIGSTORE_CONFORMANCE_DIR]
#
# The directory defaults to the copy beside this repository
# (../shared/sigstore-vectors/keyless/sigstore-conformance). The harness
# needs pytest, platformdirs, urllib3 >= 2, cryptography and
# sigstore-protobuf-specs (VENV=DIR: a virtualenv that has them; made with
# pip when missing). Verification only (--skip-signing); the identity-token
# fixture, which the harness fetches from the network, is replaced by a
# dummy token (its identity is never used when signing is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/sigstore-vectors/keyless/sigstore-conformance}
venv=${VENV:-target/conformance-venv}
[ -d "$src/test" ] || { echo "no sigstore-conformance harness in $src" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pytest platformdirs "urllib3>=2" cryptography sigstore-protobuf-specs pydantic
fi
cargo build -q --example conformance
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work"
token=$(python3 -c 'import base64, json
e = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
print(e({"alg": "none"}) + "." + e({"email": "dummy@example.invalid", "iss": "https://example.invalid", "exp": 4102444800}) + ".x")')
python3 - "$work/test/conftest.py" "$token" <<'PY'
import re, sys
p, token = sys.argv[1:]
s = open(p).read()
s, n = re.subn(r'(def identity_token\(\) -> str:\n)(.*?)(\n\n)', lambda m: m.group(1) + f'    return "{token}"' + m.group(3), s, flags=re.S)
assert n == 1, "the harness's identity_token fixture changed"
open(p, "w").write(s)
PY
bin=$PWD/target/debug/examples/conformance py=$(cd "$venv" && pwd)/bin/python
cd "$work"
# Expected (docs/signatures.md#conformance): the Rekor v2 cases that should
# pass are refused as unsupported, one RFC 3161 `_fail` case is accepted,
# and by digest the messageSignature cases ask for the file.
"$py" -m pytest test --entrypoint="$bin" --skip-signing -q -p no:cacheprovider -rf || true
