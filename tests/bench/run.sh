#!/usr/bin/env bash
# Portcullis benchmark, first version (issue 6). One command:
#
#     tests/bench/run.sh
#
# Installs nginx + wrk if missing (Debian), builds `portcullis` in release into a
# separate target dir, then starts on loopback, on free ports, in a temp dir:
#   upstream   nginx returning a fixed 1 KiB JSON body (keep-alive)
#   nginx      the reference: plain keep-alive proxy_pass to the upstream
#   portcullis /public (public route) and /app (protected: IP allowlist, API token,
#              Cedar decision, identity headers) to the same upstream
# and hands over to measure.py (wrk at c=64 and c=1, 3 rounds, medians, ratios to
# nginx). Stops only the processes it started, by PID, on any exit.
#
# Knobs (environment): BENCH_DURATION (s per run, default 10), BENCH_ROUNDS (3),
# BENCH_WARMUP (3), BENCH_TARGET_DIR (/work/target-bench), BENCH_OUT (results file),
# BENCH_WORKERS (nginx worker_processes, default: nproc), BENCH_SKIP_BUILD=1 (reuse
# the binary already in the target dir).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${BENCH_TARGET_DIR:-/work/target-bench}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-3}
WORKERS=${BENCH_WORKERS:-$(nproc)}
OUT=${BENCH_OUT:-$HERE/results/latest.md}
BIN=$TARGET_DIR/release/portcullis

WORK=""
PIDS=()     # every process this script started, stopped in reverse order

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

cleanup() {
    local status=$? pid i all=()
    # Our processes plus their direct children (nginx workers), all by PID.
    for pid in "${PIDS[@]}"; do
        all+=("$pid")
        all+=($(pgrep -P "$pid" 2>/dev/null || true))
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${all[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if ((status != 0)); then
            log "logs of the failed run:"
            tail -n 20 "$WORK"/*.log >&2 2>/dev/null || true
        fi
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_tools() {
    local missing=()
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    if ((${#missing[@]})); then
        local sudo=""
        ((EUID == 0)) || sudo=sudo
        log "installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
            || die "could not install ${missing[*]}"
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

build() {
    if [[ ${BENCH_SKIP_BUILD:-0} == 1 ]]; then
        log "BENCH_SKIP_BUILD=1: using the existing $BIN"
        [[ -x $BIN ]] || die "no binary at $BIN"
        return
    fi
    log "building portcullis (release) into $TARGET_DIR"
    (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR nice -n 10 \
        cargo build --release --quiet -p portcullis-gateway) || die "release build failed"
    [[ -x $BIN ]] || die "no binary at $BIN"
}

# Prints N free loopback TCP ports (bound together, so distinct).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits (max 15 s) until $2 answers HTTP at all, failing if process $1 died.
wait_http() {
    local pid=$1 url=$2
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || die "process $pid exited before listening ($url)"
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "$url did not answer within 15 s"
}

# A fixed JSON body of exactly 1024 bytes, without `$` or `'` (it goes into nginx config).
write_body() {
    python3 - "$WORK/body.json" <<'EOF'
import json, sys
doc = {"service": "bench", "status": "ok", "items": []}
i = 0
while len(json.dumps(doc, separators=(",", ":"))) < 1024 - 40:
    doc["items"].append({"id": i, "name": f"item-{i:04d}"})
    i += 1
text = json.dumps(doc, separators=(",", ":"))
doc["pad"] = "x" * (1024 - len(text) - len(',"pad":""'))
text = json.dumps(doc, separators=(",", ":"))
assert len(text) == 1024, len(text)
open(sys.argv[1], "w").write(text)
EOF
}

# nginx_conf NAME PORT HTTP_BLOCK_BODY: a self-contained config under $WORK.
nginx_conf() {
    local name=$1 port=$2 inner=$3
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name/nginx.conf" <<EOF
daemon off;
worker_processes $WORKERS;
pid $WORK/$name/nginx.pid;
error_log $WORK/$name.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/$name/client_body;
    proxy_temp_path $WORK/$name/proxy;
    fastcgi_temp_path $WORK/$name/fastcgi;
    uwsgi_temp_path $WORK/$name/uwsgi;
    scgi_temp_path $WORK/$name/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
$inner
    }
}
EOF
}

# start_nginx NAME: runs the master in the foreground of a background job; sets STARTED.
start_nginx() {
    local name=$1
    "$NGINX" -t -q -p "$WORK/$name" -c "$WORK/$name/nginx.conf" 2>>"$WORK/$name.log" \
        || die "nginx config $name is invalid"
    "$NGINX" -p "$WORK/$name" -c "$WORK/$name/nginx.conf" </dev/null >>"$WORK/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

start_upstream() {
    nginx_conf upstream "$UPSTREAM_PORT" "        location / {
            default_type application/json;
            return 200 '$(cat "$WORK/body.json")';
        }"
    start_nginx upstream
    UPSTREAM_PID=$STARTED
    wait_http "$UPSTREAM_PID" "http://127.0.0.1:$UPSTREAM_PORT/"
}

start_reference() {
    nginx_conf reference "$NGINX_PORT" "        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;"
    start_nginx reference
    NGINX_PID=$STARTED
    wait_http "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/"
}

# Config, store (org, workspace, user, API token via the CLI), role binding, start.
start_portcullis() {
    local dir=$WORK/portcullis org ws user
    mkdir -p "$dir/data" "$dir/keys"
    cp -r "$REPO/policies" "$dir/policies"
    python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/keys/main.key"
    chmod 600 "$dir/keys/main.key"
    cat >"$dir/portcullis.toml" <<EOF
version = 1

[[listener]]
name = "bench"
bind = "127.0.0.1:$PORTCULLIS_PORT"

[limits]
drain_timeout = "2s"

[store]
url = "sqlite://data/portcullis.db"

[policy]
dir = "policies"
bindings = "bindings.json"
environment = "dev"

[keys]
main_key = "file:keys/main.key"

[[route]]
id = "public"
host = "*"
path = "/public"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
access = "public"

[[route]]
id = "app"
host = "*"
path = "/app"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
access = "protected"
resource = 'App::"bench"'
allow = ["127.0.0.0/8"]
EOF
    # The real bindings need the user id the CLI creates below; start empty.
    echo '{"entities": [], "bindings": []}' >"$dir/bindings.json"
    "$BIN" check-config "$dir/portcullis.toml" >/dev/null || die "portcullis config invalid"
    local cfg=(--config "$dir/portcullis.toml") cli_log=$WORK/cli.log
    org=$("$BIN" org "${cfg[@]}" create bench 2>>"$cli_log")
    ws=$("$BIN" workspace "${cfg[@]}" create --organization "$org" bench --environment dev 2>>"$cli_log")
    user=$("$BIN" user "${cfg[@]}" add --organization "$org" bench@bench.test 2>>"$cli_log")
    BENCH_TOKEN=$("$BIN" token "${cfg[@]}" create --workspace "$ws" --user "$user" --name bench 2>>"$cli_log")
    [[ $BENCH_TOKEN == pcl_* ]] || die "unexpected token output: $BENCH_TOKEN"
    cat >"$dir/bindings.json" <<EOF
{"entities": [{"type": "App", "id": "bench"}],
 "bindings": [{"user": "$user", "role": "operator", "scope": {"type": "App", "id": "bench"}}]}
EOF
    (cd "$dir" && exec "$BIN" serve --config "$dir/portcullis.toml" </dev/null \
        >>"$WORK/portcullis.log" 2>&1) &
    PORTCULLIS_PID=$!
    PIDS+=("$PORTCULLIS_PID")
    wait_http "$PORTCULLIS_PID" "http://127.0.0.1:$PORTCULLIS_PORT/public"
}

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
    } >"$WORK/facts.txt"
    sed 's/^/[bench] /' "$WORK/facts.txt" >&2
}

main() {
    ensure_tools
    build
    WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
    chmod 755 "$WORK"   # nginx workers may run as another user
    read -r UPSTREAM_PORT NGINX_PORT PORTCULLIS_PORT < <(free_ports 3)
    write_body
    start_upstream
    start_reference
    start_portcullis
    log "upstream :$UPSTREAM_PORT (pid $UPSTREAM_PID), nginx :$NGINX_PORT (pid $NGINX_PID)," \
        "portcullis :$PORTCULLIS_PORT (pid $PORTCULLIS_PID), $WORKERS nginx workers each"
    machine_facts
    BENCH_TOKEN=$BENCH_TOKEN timeout -k 10 780 python3 "$HERE/measure.py" \
        --nginx-url "http://127.0.0.1:$NGINX_PORT/app" \
        --public-url "http://127.0.0.1:$PORTCULLIS_PORT/public" \
        --token-url "http://127.0.0.1:$PORTCULLIS_PORT/app" \
        --nginx-master "$NGINX_PID" --upstream-master "$UPSTREAM_PID" \
        --portcullis-pid "$PORTCULLIS_PID" --body "$WORK/body.json" \
        --duration "$DURATION" --rounds "$ROUNDS" --warmup "$WARMUP" --out "$OUT" \
        --facts "$WORK/facts.txt" \
        || die "measurement failed"
    log "results written to $OUT (and ${OUT%.md}.json)"
}

main "$@"
