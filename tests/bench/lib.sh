# Shared by tests/bench/run.sh and tests/bench/profile.sh (sourced, not run).
#
# Provides: logging and failing (log, die), the EXIT trap that stops only the processes
# this script started (by PID, plus their direct children: nginx workers), tool checks,
# the release build, free loopback ports, the upstream and reference nginx, and
# `setup_portcullis`, which prepares and starts one portcullis instance with an
# organization, a workspace, a user with a password, an API token, a role binding and
# a signed-in session.
#
# Callers set REPO, HERE, TARGET_DIR and BIN, then call `bench_init` once.

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
        if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then
            log "BENCH_KEEP_WORK=1: keeping $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}

bench_init() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
    chmod 755 "$WORK"   # nginx workers may run as another user
}

# ensure_tools TOOL...: installs the Debian packages for missing tools.
ensure_tools() {
    local missing=() tool
    for tool in "$@"; do
        case $tool in
        nginx) command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light) ;;
        *) command -v "$tool" >/dev/null || missing+=("$tool") ;;
        esac
    done
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

# Waits (max 60 s: valgrind starts slowly) until $2 answers HTTP, failing if $1 died.
wait_http() {
    local pid=$1 url=$2
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || die "process $pid exited before listening ($url)"
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "$url did not answer within 60 s"
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

# start_authfront PORT GATEWAY_PORT: nginx in front of the same upstream, asking the
# gateway's forward-auth endpoint about every request first (`auth_request`), the way
# deploy/forward-auth/nginx.conf does. Sets AUTHFRONT_PID.
start_authfront() {
    local port=$1 gateway=$2
    nginx_conf authfront "$port" "        location = /_portcullis_auth {
            internal;
            proxy_pass http://portcullis/.portcullis/auth;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Forwarded-Host bench;
            proxy_set_header X-Forwarded-Uri \$request_uri;
            proxy_set_header X-Forwarded-Method \$request_method;
        }
        location / {
            auth_request /_portcullis_auth;
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
    upstream portcullis {
        server 127.0.0.1:$gateway;
        keepalive 64;
        keepalive_requests 1000000;
    }
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;"
    start_nginx authfront
    AUTHFRONT_PID=$STARTED
    wait_http "$AUTHFRONT_PID" "http://127.0.0.1:$port/"
}

# The bench user's password (meets the password policy; never a real secret).
BENCH_EMAIL=olga@bench.test
BENCH_PASSWORD=correct-horse-battery-staple-42

# setup_portcullis NAME PORT: prepares $WORK/NAME (config, store, CLI setup) without
# starting it. Knobs, as variables set for the call:
#   POLICY_DIR     bundle folder to copy (default: the repository's policies/)
#   N_SESSIONS     extra session rows to insert with sqlite3 (default 0)
#   N_BINDINGS     extra role bindings in the bindings file (default 0)
# Sets, for the instance: DIR_<NAME>, TOKEN_<NAME>, USER_<NAME>, ORG_<NAME>, WS_<NAME>.
setup_portcullis() {
    local name=$1 port=$2 dir=$WORK/$1 org ws user token
    local cfg=(--config "$WORK/$1/portcullis.toml") cli_log=$WORK/$1-cli.log
    mkdir -p "$dir/data" "$dir/keys"
    cp -r "${POLICY_DIR:-$REPO/policies}" "$dir/policies"
    python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/keys/main.key"
    chmod 600 "$dir/keys/main.key"
    cat >"$dir/portcullis.toml" <<EOF
version = 1

[[listener]]
name = "bench"
bind = "127.0.0.1:$port"

[limits]
drain_timeout = "2s"

# wrk is the "trusted proxy" asking the forward-auth endpoint.
[network]
trusted_proxies = ["127.0.0.1/32"]

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
    "$BIN" check-config "$dir/portcullis.toml" >/dev/null 2>>"$cli_log" \
        || die "$name: portcullis config invalid (see $cli_log)"
    org=$("$BIN" org "${cfg[@]}" create bench 2>>"$cli_log")
    ws=$("$BIN" workspace "${cfg[@]}" create --organization "$org" bench --environment dev 2>>"$cli_log")
    user=$("$BIN" user "${cfg[@]}" add --organization "$org" "$BENCH_EMAIL" 2>>"$cli_log")
    printf '%s\n' "$BENCH_PASSWORD" \
        | "$BIN" user "${cfg[@]}" passwd --organization "$org" "$BENCH_EMAIL" 2>>"$cli_log" \
        || die "$name: could not set the password (see $cli_log)"
    token=$("$BIN" token "${cfg[@]}" create --workspace "$ws" --user "$user" --name bench 2>>"$cli_log")
    [[ $token == pcl_* ]] || die "$name: unexpected token output: $token"
    # Browser sign-in lands in this organization and workspace.
    cat >>"$dir/portcullis.toml" <<EOF

[login]
organization = "$org"
workspace = "$ws"
EOF
    "$BIN" check-config "$dir/portcullis.toml" >/dev/null 2>>"$cli_log" \
        || die "$name: portcullis config with [login] invalid (see $cli_log)"
    python3 "$HERE/fixtures.py" bindings --user "$user" --extra "${N_BINDINGS:-0}" \
        --out "$dir/bindings.json" || die "$name: could not write the bindings"
    if ((${N_SESSIONS:-0} > 0)); then
        log "$name: inserting ${N_SESSIONS} sessions with sqlite3"
        python3 "$HERE/fixtures.py" sessions --db "$dir/data/portcullis.db" \
            --count "$N_SESSIONS" || die "$name: could not insert sessions"
    fi
    printf -v "DIR_$name" '%s' "$dir"
    printf -v "TOKEN_$name" '%s' "$token"
    printf -v "USER_$name" '%s' "$user"
    printf -v "ORG_$name" '%s' "$org"
    printf -v "WS_$name" '%s' "$ws"
}

# start_portcullis NAME PORT [WRAPPER...]: starts a prepared instance (optionally under
# a wrapper such as valgrind), waits for it, and signs in once; sets PID_<NAME> and
# COOKIE_<NAME> (the session cookie value). SERVE_BIN, if set, is the binary that
# serves (e.g. an older build to compare with); the store was set up with $BIN.
start_portcullis() {
    local name=$1 port=$2 dir=$WORK/$1 pid cookie
    shift 2
    (cd "$dir" && exec "$@" "${SERVE_BIN:-$BIN}" serve --config "$dir/portcullis.toml" </dev/null \
        >>"$WORK/$name.log" 2>&1) &
    pid=$!
    PIDS+=("$pid")
    wait_http "$pid" "http://127.0.0.1:$port/public"
    cookie=$(python3 "$HERE/client.py" signin --base "http://127.0.0.1:$port" \
        --email "$BENCH_EMAIL" --password "$BENCH_PASSWORD") \
        || die "$name: sign-in through /.portcullis/login failed"
    printf -v "PID_$name" '%s' "$pid"
    printf -v "COOKIE_$name" '%s' "$cookie"
}
