#!/usr/bin/env bash
# Installs the SMTP test peer (aiosmtpd from PyPI) into a venv beside this script.
# Idempotent and quick when already installed.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x .venv/bin/python ] && .venv/bin/python -c "import aiosmtpd" 2>/dev/null; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
