#!/usr/bin/env bash
# Instruction counts per request for the Portcullis hot path (issue 6), with callgrind.
#
#     tests/bench/profile.sh            # public, token and session routes, and nginx
#
# Wall-clock figures are noisy on a shared machine; instruction counts are not. This
# starts an upstream nginx and one portcullis (release build) under
# `valgrind --tool=callgrind --instr-atstart=no`, signs in once, and for each route:
# warms the caches with a few requests, switches instrumentation on, zeroes the
# counters, sends BENCH_PROFILE_REQUESTS keep-alive GETs (each checked for status 200
# and the exact body), and dumps. Instructions per request = the dump's total / count.
# The run also counts the process's other threads (the whole process is measured).
#
# The reference nginx (one process: master_process off, one worker, the same keep-alive
# proxy_pass to the same upstream) is counted the same way, as `nginx`.
#
# Results: tests/bench/results/profile/<route>.callgrind (open with kcachegrind or
# callgrind_annotate) and summary.txt (instructions per request and the top functions).
#
# Knobs: BENCH_PROFILE_REQUESTS (300: under callgrind a request takes a few ms, and
# the run should stay inside the 5-second cache lifetimes so it measures warm
# requests), BENCH_TARGET_DIR, BENCH_SKIP_BUILD=1, BENCH_PROFILE_OUT (result folder),
# BENCH_BIN (profile another binary, e.g. an older build for a before/after).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${BENCH_TARGET_DIR:-/work/target-bench}
BIN=${BENCH_BIN:-$TARGET_DIR/release/portcullis}
WORKERS=1
REQUESTS=${BENCH_PROFILE_REQUESTS:-300}
OUT_DIR=${BENCH_PROFILE_OUT:-$HERE/results/profile}
# shellcheck source=tests/bench/lib.sh
source "$HERE/lib.sh"

# callgrind_control finds the process by PID; allow it a while under load.
control() { timeout 120 callgrind_control "$@" >/dev/null || die "callgrind_control $* failed"; }

# profile_route PID NAME URL [HEADER...]
profile_route() {
    local pid=$1 name=$2 url=$3 headers=() header
    shift 3
    for header in "$@"; do headers+=(--header "$header"); done
    python3 "$HERE/client.py" loop --url "$url" --body "$WORK/body.json" --count 20 "${headers[@]}" \
        || die "$name: warm-up failed"
    control -i on "$pid"
    control -z "$pid"
    python3 "$HERE/client.py" loop --url "$url" --body "$WORK/body.json" \
        --count "$REQUESTS" "${headers[@]}" || die "$name: measured loop failed"
    control -d "$name" "$pid"
    control -i off "$pid"
    local dump
    dump=$(ls -t "$WORK"/callgrind.out.* | grep -v '\.0$' | head -n1 || true)
    [[ -n $dump ]] || die "$name: no callgrind dump"
    mv "$dump" "$OUT_DIR/$name.callgrind"
    local total
    total=$(grep -m1 '^summary:' "$OUT_DIR/$name.callgrind" | awk '{print $2}')
    [[ -n $total ]] || total=$(grep -m1 '^totals:' "$OUT_DIR/$name.callgrind" | awk '{print $2}')
    {
        printf '== %s: %s instructions / %s requests = %s per request\n' "$name" "$total" \
            "$REQUESTS" "$((total / REQUESTS))"
        echo "-- top inclusive"
        callgrind_annotate --inclusive=yes "$OUT_DIR/$name.callgrind" 2>/dev/null \
            | grep -E '^ *[0-9][0-9,]* ' | grep -v 'PROGRAM TOTALS' | sed -n '1,45p'
        echo "-- top exclusive"
        callgrind_annotate "$OUT_DIR/$name.callgrind" 2>/dev/null \
            | grep -E '^ *[0-9][0-9,]* ' | grep -v 'PROGRAM TOTALS' | sed -n '1,30p'
        echo
    } >>"$OUT_DIR/summary.txt"
    log "$name: $((total / REQUESTS)) instructions per request"
}

# The reference nginx as one process under callgrind (no master, one worker).
start_reference_single() {
    mkdir -p "$WORK/reference"
    cat >"$WORK/reference/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/reference/nginx.pid;
error_log $WORK/reference.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/reference/client_body;
    proxy_temp_path $WORK/reference/proxy;
    fastcgi_temp_path $WORK/reference/fastcgi;
    uwsgi_temp_path $WORK/reference/uwsgi;
    scgi_temp_path $WORK/reference/scgi;
    keepalive_requests 1000000;
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out.%p" \
        --dump-instr=no "$NGINX" -p "$WORK/reference" -c "$WORK/reference/nginx.conf" \
        </dev/null >>"$WORK/reference.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/"
}

main() {
    ensure_tools nginx wrk curl python3 sqlite3 valgrind
    build
    bench_init
    mkdir -p "$OUT_DIR"
    rm -f "$OUT_DIR"/*.callgrind "$OUT_DIR/summary.txt"
    read -r UPSTREAM_PORT PORT NGINX_PORT < <(free_ports 3)
    write_body
    start_upstream
    setup_portcullis main "$PORT"
    start_portcullis main "$PORT" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/callgrind.out.%p" --dump-instr=no
    {
        echo "# callgrind, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$REPO" rev-parse --short HEAD)"
        echo "# $BIN; $REQUESTS warm keep-alive requests per route; load: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
    } >"$OUT_DIR/summary.txt"
    local base=http://127.0.0.1:$PORT
    profile_route "$PID_main" public "$base/public"
    profile_route "$PID_main" token "$base/app" "Authorization: Bearer $TOKEN_main"
    profile_route "$PID_main" session "$base/app" "Cookie: __Host-portcullis=$COOKIE_main"
    start_reference_single
    profile_route "$NGINX_PID" nginx "http://127.0.0.1:$NGINX_PORT/app"
    grep '^==' "$OUT_DIR/summary.txt" >&2
    log "profiles in $OUT_DIR"
}

main "$@"
