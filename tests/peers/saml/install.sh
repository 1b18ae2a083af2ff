#!/usr/bin/env bash
# Installs the test SAML IdP's dependencies: the xmlsec1 binary (Debian) and pysaml2
# with its pinned requirements in tests/peers/saml/.venv. Idempotent and quick when
# everything is already there. The Rust tests find the IdP through .venv/bin/python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v xmlsec1 >/dev/null 2>&1; then
  echo "installing: xmlsec1"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xmlsec1
fi

stamp="$here/.venv/.requirements.sha256"
wanted="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ -x "$here/.venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  exit 0
fi
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$here/requirements.txt"
"$here/.venv/bin/pip" check --disable-pip-version-check >/dev/null
echo "$wanted" > "$stamp"
