#!/usr/bin/env bash
# Installs the OpenID Provider the OIDC tests run (panva/oidc-provider, pinned by
# package-lock.json). Idempotent: does nothing when the locked version is installed.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "oidc peer: node and npm are required (Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi
wanted=$(node -p 'require("./package-lock.json").packages["node_modules/oidc-provider"].version')
installed=$(node -p 'try { require("./node_modules/oidc-provider/package.json").version } catch { "" }')
if [ "$wanted" = "$installed" ]; then
    echo "oidc peer: oidc-provider $installed already installed"
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "oidc peer: oidc-provider $wanted installed"
