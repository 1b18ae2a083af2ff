#!/usr/bin/env python3
"""Scale fixtures for the Portcullis benchmark. Standard library only.

  bindings  the bindings file: the bench user's `operator` binding on App::"bench",
            plus N synthetic bindings (other users, 1,000 other apps, and every tenth
            one on App::"bench" itself, so the benchmarked scope is crowded too)
  sessions  N extra session rows, inserted with the sqlite3 command-line tool into the
            store in one transaction, spread over 1,000 synthetic users of the bench
            organization; ids are random, so none of them is the benchmarked one
  policies  a bundle of exactly N policies: the schema, the Operator role, and N - 1
            generated ones of four kinds (per-app forbids, custom-role permits, guardrail
            forbids every request evaluates, write-only forbids)
"""

import argparse
import json
import shutil
import subprocess
from pathlib import Path

ROLES = ["operator", "analyst", "admin"]


def bindings(args):
    entities = [{"type": "App", "id": "bench"}]
    entities += [{"type": "App", "id": f"app-{k}"} for k in range(min(args.extra, 1000))]
    items = [{"user": args.user, "role": "operator", "scope": {"type": "App", "id": "bench"}}]
    for i in range(args.extra):
        scope = "bench" if i % 10 == 0 else f"app-{i % 1000}"
        items.append(
            {
                "user": f"synthetic-{i:06d}",
                "role": ROLES[i % len(ROLES)],
                "scope": {"type": "App", "id": scope},
            }
        )
    Path(args.out).write_text(json.dumps({"entities": entities, "bindings": items}))


SESSIONS_SQL = """
PRAGMA journal_mode = WAL;
BEGIN;
CREATE TEMP TABLE bench_base AS
    SELECT u.organization_id AS org, w.id AS ws, u.created_at AS at
    FROM users u JOIN workspaces w ON w.organization_id = u.organization_id LIMIT 1;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO users (id, organization_id, email, display_name, disabled, created_at)
    SELECT randomblob(16), org, 'synthetic-' || i || '@bench.test', 'synthetic ' || i, 0, at
    FROM n, bench_base;
CREATE TEMP TABLE bench_users (k INTEGER PRIMARY KEY, id BLOB NOT NULL);
INSERT INTO bench_users SELECT row_number() OVER () - 1, id FROM users
    WHERE email LIKE 'synthetic-%';
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
INSERT INTO sessions (id_hash, organization_id, workspace_id, user_id, created_at,
                      last_seen_at, idle_timeout_secs, absolute_expiry, mfa_done,
                      auth_method, revoked_at)
    SELECT randomblob(32), org, ws, (SELECT id FROM bench_users WHERE k = i % 1000),
           at, at, 1800, '2099' || substr(at, 5), 0, 'password', NULL
    FROM n, bench_base;
COMMIT;
SELECT count(*) FROM sessions;
"""


def sessions(args):
    sql = SESSIONS_SQL.replace("{count}", str(int(args.count)))
    result = subprocess.run(
        ["sqlite3", args.db], input=sql, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise SystemExit(f"sqlite3 failed: {result.stderr.strip()}")
    total = int(result.stdout.split()[-1])
    if total < args.count:
        raise SystemExit(f"expected at least {args.count} sessions, found {total}")


def policies(args):
    source, out = Path(args.source), Path(args.out)
    out.mkdir(parents=True)
    shutil.copy(source / "schema.cedarschema", out / "schema.cedarschema")
    (out / "roles").mkdir()
    shutil.copy(source / "roles" / "operator.cedar", out / "roles" / "operator.cedar")
    generated = []
    for i in range(args.count - 1):
        kind = i % 4
        if kind == 0:
            body = (
                f'forbid (principal, action, resource == App::"app-{i}")\n'
                f'unless {{ context.authMethod == "oidc" }};'
            )
        elif kind == 1:
            body = (
                f'permit (principal in Role::"custom-{i}", '
                f'action in [Action::"read"], resource);'
            )
        elif kind == 2:
            body = (
                "forbid (principal, action, resource)\n"
                f"when {{ context.sessionAgeSeconds > {100000 + i} && "
                f'context.ip.isInRange(ip("10.{i % 256}.0.0/16")) }};'
            )
        else:
            body = (
                'forbid (principal, action in Action::"write", resource)\n'
                f'when {{ context.environment == "prod" && context.sessionAgeSeconds > {i} }};'
            )
        generated.append(f'@id("bench.generated-{i}")\n{body}\n')
    if generated:
        (out / "generated").mkdir()
        (out / "generated" / "bench.cedar").write_text("\n".join(generated))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bindings")
    b.add_argument("--user", required=True)
    b.add_argument("--extra", type=int, default=0)
    b.add_argument("--out", required=True)
    s = sub.add_parser("sessions")
    s.add_argument("--db", required=True)
    s.add_argument("--count", type=int, required=True)
    p = sub.add_parser("policies")
    p.add_argument("--source", required=True, help="the default bundle folder")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    {"bindings": bindings, "sessions": sessions, "policies": policies}[args.command](args)


if __name__ == "__main__":
    main()
