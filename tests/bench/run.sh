#!/usr/bin/env bash
# Portcullis benchmark (issue 6). One command:
#
#     tests/bench/run.sh
#
# Installs nginx, wrk and sqlite3 if missing (Debian), builds `portcullis` in release
# into a separate target dir, then starts on loopback, on free ports, in a temp dir:
#   upstream    nginx returning a fixed 1 KiB JSON body (keep-alive)
#   nginx       the reference: plain keep-alive proxy_pass to the upstream
#   portcullis  `main`: /public (public route) and /app (protected: IP allowlist, API
#               token or session cookie, Cedar decision, identity headers, signed
#               assertion), default bundle, 1 role binding, 1 session
#   portcullis  scale axes, same routes, session cookie only: `sessions-1m` (1,000,000
#               other sessions in the store), `bindings-100k` (100,000 other role
#               bindings), `policies-1` and `policies-1000` (bundles of 1 and 1,000 policies)
# and hands over to measure.py (wrk at c=64 and c=1, 3 rounds, medians, ratios to
# nginx and to the main session target, then the login storm). Stops only the
# processes it started, by PID, on any exit. Forward-auth is measured too, directly and
# behind an nginx `auth_request` front.
#
# Knobs (environment): BENCH_DURATION (s per run, default 10), BENCH_ROUNDS (3),
# BENCH_WARMUP (3), BENCH_TARGET_DIR (/work/target-bench), BENCH_OUT (results file),
# BENCH_WORKERS (nginx worker_processes, default: nproc), BENCH_SKIP_BUILD=1 (reuse
# the binary already in the target dir), BENCH_SCALE=0 (main targets only),
# BENCH_SESSIONS (1000000), BENCH_BINDINGS (100000), BENCH_POLICIES (1000),
# BENCH_STORM (sign-in threads in the login storm, 8; 0 skips it), BENCH_BASELINE_BIN
# (an older portcullis binary: its public, token and session routes are measured in
# the same run, as `before: …`, for before/after tables).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${BENCH_TARGET_DIR:-/work/target-bench}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-3}
WORKERS=${BENCH_WORKERS:-$(nproc)}
OUT=${BENCH_OUT:-$HERE/results/latest.md}
SCALE=${BENCH_SCALE:-1}
STORM=${BENCH_STORM:-8}
BIN=$TARGET_DIR/release/portcullis
# shellcheck source=tests/bench/lib.sh
source "$HERE/lib.sh"

# Machine and build facts, written to $WORK/facts.txt and copied into the results.
machine_facts() {
    local rev dirty
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$REPO" status --porcelain --untracked-files=no -- gateway policy Cargo.toml Cargo.lock 2>/dev/null | wc -l)
    {
        echo "nproc:      $(nproc)"
        echo "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "kernel:     $(uname -r)"
        echo "rustc:      $(rustc --version)"
        echo "nginx:      $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') ($WORKERS workers per nginx)"
        echo "wrk:        $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
        echo "portcullis: $BIN (commit $rev, $dirty locally modified files under gateway/ policy/ Cargo.*)"
        if [[ -n ${BENCH_BASELINE_BIN:-} ]]; then
            echo "baseline:   $BENCH_BASELINE_BIN (the \`before: …\` targets)"
        fi
    } >"$WORK/facts.txt"
    sed 's/^/[bench] /' "$WORK/facts.txt" >&2
}

# target NAME URL PID [key=value ...] HEADER...: one JSON object for measure.py.
# Options before the headers: nginx=1, scale=1, empty=1 (answers 200 with no body,
# like forward-auth), storm=<instance>, also=<pid> (another process whose CPU and memory
# are charged to the target too).
target() {
    python3 - "$@" <<'EOF'
import json, sys
name, url, pid, *rest = sys.argv[1:]
target = {"name": name, "url": url, "pid": int(pid), "headers": []}
for item in rest:
    key, sep, value = item.partition("=")
    if sep and key in ("nginx", "scale", "empty"):
        target[key] = value == "1"
    elif sep and key == "storm":
        target["storm"] = json.loads(value)
    elif sep and key == "also":
        target.setdefault("also", []).append(int(value))
    else:
        target["headers"].append(item)
print(json.dumps(target))
EOF
}

main() {
    ensure_tools nginx wrk curl python3 sqlite3
    build
    bench_init
    read -r UPSTREAM_PORT NGINX_PORT P_MAIN P_SESS P_BIND P_POL1 P_POL1000 P_BEFORE P_AUTH \
        < <(free_ports 9)
    write_body
    start_upstream
    start_reference

    setup_portcullis main "$P_MAIN"
    start_portcullis main "$P_MAIN"
    start_authfront "$P_AUTH" "$P_MAIN"
    local storm
    storm=$(printf '{"base": "http://127.0.0.1:%s", "email": "%s", "password": "%s"}' \
        "$P_MAIN" "$BENCH_EMAIL" "$BENCH_PASSWORD")
    {
        echo '{"baseline": "portcullis session", "targets": ['
        target nginx "http://127.0.0.1:$NGINX_PORT/app" "$NGINX_PID" nginx=1
        echo ,
        target "portcullis public" "http://127.0.0.1:$P_MAIN/public" "$PID_main"
        echo ,
        target "portcullis token" "http://127.0.0.1:$P_MAIN/app" "$PID_main" \
            "Authorization: Bearer $TOKEN_main"
        echo ,
        target "portcullis session" "http://127.0.0.1:$P_MAIN/app" "$PID_main" \
            "storm=$storm" "Cookie: __Host-portcullis=$COOKIE_main"
        echo ,
        target "portcullis forward-auth" "http://127.0.0.1:$P_MAIN/.portcullis/auth" \
            "$PID_main" empty=1 "X-Forwarded-Host: bench" "X-Forwarded-Uri: /app" \
            "Cookie: __Host-portcullis=$COOKIE_main"
        echo ,
        target "nginx auth_request + portcullis" "http://127.0.0.1:$P_AUTH/app" \
            "$AUTHFRONT_PID" nginx=1 "also=$PID_main" "Cookie: __Host-portcullis=$COOKIE_main"
    } >"$WORK/targets.json"

    if [[ -n ${BENCH_BASELINE_BIN:-} ]]; then
        [[ -x $BENCH_BASELINE_BIN ]] || die "no binary at $BENCH_BASELINE_BIN"
        setup_portcullis before "$P_BEFORE"
        SERVE_BIN=$BENCH_BASELINE_BIN start_portcullis before "$P_BEFORE"
        {
            echo ,
            target "before: public" "http://127.0.0.1:$P_BEFORE/public" "$PID_before"
            echo ,
            target "before: token" "http://127.0.0.1:$P_BEFORE/app" "$PID_before" \
                "Authorization: Bearer $TOKEN_before"
            echo ,
            target "before: session" "http://127.0.0.1:$P_BEFORE/app" "$PID_before" \
                "Cookie: __Host-portcullis=$COOKIE_before"
        } >>"$WORK/targets.json"
    fi
    if [[ $SCALE == 1 ]]; then
        local sessions=${BENCH_SESSIONS:-1000000} bindings=${BENCH_BINDINGS:-100000}
        local policies=${BENCH_POLICIES:-1000}
        N_SESSIONS=$sessions setup_portcullis sessions "$P_SESS"
        start_portcullis sessions "$P_SESS"
        N_BINDINGS=$bindings setup_portcullis bindings "$P_BIND"
        start_portcullis bindings "$P_BIND"
        python3 "$HERE/fixtures.py" policies --source "$REPO/policies" --count 1 \
            --out "$WORK/bundle-1" || die "could not generate the 1-policy bundle"
        python3 "$HERE/fixtures.py" policies --source "$REPO/policies" --count "$policies" \
            --out "$WORK/bundle-n" || die "could not generate the $policies-policy bundle"
        POLICY_DIR=$WORK/bundle-1 setup_portcullis pol1 "$P_POL1"
        start_portcullis pol1 "$P_POL1"
        POLICY_DIR=$WORK/bundle-n setup_portcullis poln "$P_POL1000"
        start_portcullis poln "$P_POL1000"
        {
            echo ,
            target "session, $sessions sessions" "http://127.0.0.1:$P_SESS/app" \
                "$PID_sessions" scale=1 "Cookie: __Host-portcullis=$COOKIE_sessions"
            echo ,
            target "session, $bindings bindings" "http://127.0.0.1:$P_BIND/app" \
                "$PID_bindings" scale=1 "Cookie: __Host-portcullis=$COOKIE_bindings"
            echo ,
            target "session, 1 policy" "http://127.0.0.1:$P_POL1/app" \
                "$PID_pol1" scale=1 "Cookie: __Host-portcullis=$COOKIE_pol1"
            echo ,
            target "session, $policies policies" "http://127.0.0.1:$P_POL1000/app" \
                "$PID_poln" scale=1 "Cookie: __Host-portcullis=$COOKIE_poln"
        } >>"$WORK/targets.json"
    fi
    echo ']}' >>"$WORK/targets.json"
    if [[ $STORM == 0 ]]; then
        python3 - "$WORK/targets.json" <<'EOF'
import json, sys
spec = json.load(open(sys.argv[1]))
for t in spec["targets"]:
    t.pop("storm", None)
json.dump(spec, open(sys.argv[1], "w"))
EOF
    fi
    log "upstream :$UPSTREAM_PORT (pid $UPSTREAM_PID), nginx :$NGINX_PORT (pid $NGINX_PID)," \
        "portcullis main :$P_MAIN (pid $PID_main), $WORKERS nginx workers each"
    machine_facts
    timeout -k 10 1500 python3 "$HERE/measure.py" \
        --targets "$WORK/targets.json" --upstream-master "$UPSTREAM_PID" \
        --body "$WORK/body.json" --duration "$DURATION" --rounds "$ROUNDS" \
        --warmup "$WARMUP" --storm-concurrency "$STORM" --out "$OUT" \
        --facts "$WORK/facts.txt" \
        || die "measurement failed"
    log "results written to $OUT (and ${OUT%.md}.json)"
}

main "$@"
