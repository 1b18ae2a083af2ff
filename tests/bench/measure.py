#!/usr/bin/env python3
"""Load phase of the Portcullis benchmark (called by tests/bench/run.sh).

The targets are already running and described in a JSON file (name, URL, headers, the
PID whose CPU is charged, whether it is an nginx master, other PIDs charged with it).
For each round and each load
(c=64 throughput, c=1 latency) every target is checked with curl (status 200 and the
exact body), then loaded with wrk while the CPU time of the proxy's own processes is
read from /proc before and after. Medians over the rounds are reported, and every
figure is also given as a ratio to the reference nginx measured in the same round;
the scale-axis targets are also compared with the baseline session target.

Then the login storm: the session target and the reference nginx at c=1, alone and
while tests/bench/client.py (nice 19, idle scheduling class) signs in to the gateway from N threads at full
argon2 cost; each one's p99 under the storm is compared with its p99 alone, and the
gateway's with nginx's under the same storm. Standard library only.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# (name, connections, threads)
LOADS = [("c64", 64, 2), ("c1", 1, 1)]
REFERENCE = "nginx"
# Socket errors (connect/read/write/timeout) tolerated per wrk run before failing.
MAX_SOCKET_ERRORS = 10


class BenchError(Exception):
    """A target misbehaved; the run is void."""


# ---------------------------------------------------------------------------
# /proc


def children_of(parent):
    """PIDs whose parent is `parent` (nginx workers of a master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            found.append(int(entry))
    return sorted(found)


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def vm_hwm_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise BenchError(f"no VmHWM for pid {pid}")


class Proxy:
    """The processes whose cost is charged to a target."""

    def __init__(self, name, pid, is_nginx_master, also=()):
        self.name = name
        self.pid = pid
        self.is_nginx_master = is_nginx_master
        self.also = list(also)

    def pids(self):
        for pid in [self.pid, *self.also]:
            if not Path(f"/proc/{pid}").exists():
                raise BenchError(f"{self.name} (pid {pid}) is gone")
        if self.is_nginx_master:
            workers = children_of(self.pid)
            if not workers:
                raise BenchError(f"{self.name}: no worker processes under {self.pid}")
            return workers + self.also
        return [self.pid, *self.also]

    def cpu_ticks(self):
        return sum(cpu_ticks(pid) for pid in self.pids())

    def peak_rss_kib(self):
        return sum(vm_hwm_kib(pid) for pid in self.pids())


# ---------------------------------------------------------------------------
# Checks and load


def check_target(target, body):
    """curl the target once: it must answer 200 with exactly the upstream body (or,
    for an `empty` target such as forward-auth, with no body at all)."""
    if target.get("empty"):
        body = b""
    cmd = ["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"]
    for header in target["headers"]:
        cmd += ["-H", header]
    cmd.append(target["url"])
    result = subprocess.run(cmd, capture_output=True, timeout=15)
    if result.returncode != 0:
        raise BenchError(f"{target['name']}: curl failed: {result.stderr.decode().strip()}")
    got_body, _, status = result.stdout.rpartition(b"\n")
    if status != b"200" or got_body != body:
        raise BenchError(
            f"{target['name']}: expected 200 and the {len(body)}-byte body, got "
            f"{status.decode()} and {got_body[:200]!r}"
        )


def run_wrk(target, connections, threads, duration, lua):
    cmd = [
        "wrk", "--latency", "-t", str(threads), "-c", str(connections),
        "-d", f"{duration}s", "--timeout", "5s", "-s", lua,
    ]
    for header in target["headers"]:
        cmd += ["-H", header]
    cmd.append(target["url"])
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    if result.returncode != 0:
        raise BenchError(f"{target['name']}: wrk failed: {result.stderr.strip()}")
    lines = [l for l in result.stdout.splitlines() if l.startswith("BENCH_JSON ")]
    if len(lines) != 1:
        raise BenchError(f"{target['name']}: no summary from wrk:\n{result.stdout}")
    summary = json.loads(lines[0][len("BENCH_JSON ") :])
    if summary["status_errors"]:
        raise BenchError(
            f"{target['name']}: {summary['status_errors']} non-2xx/3xx responses under load"
        )
    socket_errors = sum(
        summary[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    if socket_errors > MAX_SOCKET_ERRORS:
        raise BenchError(f"{target['name']}: {socket_errors} socket errors under load: {summary}")
    if summary["requests"] == 0:
        raise BenchError(f"{target['name']}: no request completed")
    summary["socket_errors"] = socket_errors
    return summary


def measure(target, proxy, upstream, connections, threads, duration, lua, body):
    check_target(target, body)
    before, up_before = proxy.cpu_ticks(), upstream.cpu_ticks()
    summary = run_wrk(target, connections, threads, duration, lua)
    after, up_after = proxy.cpu_ticks(), upstream.cpu_ticks()
    requests = summary["requests"]
    tick_us = 1e6 / CLK_TCK
    return {
        "rps": requests / (summary["duration_us"] / 1e6),
        "p50_us": summary["p50_us"],
        "p99_us": summary["p99_us"],
        "cpu_us_per_req": (after - before) * tick_us / requests,
        "upstream_cpu_us_per_req": (up_after - up_before) * tick_us / requests,
        "peak_rss_mib": proxy.peak_rss_kib() / 1024,
        "requests": requests,
        "socket_errors": summary["socket_errors"],
    }


# ---------------------------------------------------------------------------
# Report

METRICS = [
    # key, heading, format
    ("rps", "req/s", "{:,.0f}"),
    ("p50_us", "p50 µs", "{:,.0f}"),
    ("p99_us", "p99 µs", "{:,.0f}"),
    ("cpu_us_per_req", "CPU µs/req", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.1f}"),
]


def summarize(rounds, target_names, baseline):
    """Medians per load/target/metric, the median of per-round ratios to nginx and, for
    every target, to `baseline` (the session target the scale axes are compared with)."""
    out = {}
    for load, _, _ in LOADS:
        out[load] = {}
        for name in target_names:
            row = {}
            for key, _, _ in METRICS + [("upstream_cpu_us_per_req", None, None)]:
                values = [r[load][name][key] for r in rounds]
                row[key] = statistics.median(values)
                for suffix, ref in (("_ratio", REFERENCE), ("_vs_base", baseline)):
                    ratios = [
                        r[load][name][key] / r[load][ref][key]
                        for r in rounds
                        if ref in r[load] and r[load][ref][key]
                    ]
                    row[key + suffix] = statistics.median(ratios) if ratios else float("nan")
            deltas = [r[load][name]["p50_us"] - r[load][REFERENCE]["p50_us"] for r in rounds]
            row["p50_delta_us"] = statistics.median(deltas)
            out[load][name] = row
    return out


TITLES = {"c64": "Throughput: wrk -t2 -c64", "c1": "Latency: wrk -t1 -c1"}


def markdown(summary, main_names, scale_names, baseline, meta):
    lines = []
    for load, _, _ in LOADS:
        lines.append(f"### {TITLES[load]}, {meta['duration']} s × {meta['rounds']} rounds, medians")
        lines.append("")
        head = ["target"]
        for _, heading, _ in METRICS:
            head += [heading, "×nginx"]
        if load == "c1":
            head.append("Δp50 vs nginx µs")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name in main_names + scale_names:
            row = summary[load][name]
            cells = [name]
            for key, _, fmt in METRICS:
                cells += [fmt.format(row[key]), f"{row[key + '_ratio']:.2f}"]
            if load == "c1":
                cells.append(f"{row['p50_delta_us']:+.0f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if scale_names:
        lines.append(f"### Scale axes: each figure ÷ `{baseline}` in the same round, medians")
        lines.append("")
        lines.append("| target | c=64 req/s | c=64 CPU µs/req | c=1 p50 | c=1 p99 | c=1 CPU µs/req |")
        lines.append("|---|---|---|---|---|---|")
        for name in scale_names:
            c64, c1 = summary["c64"][name], summary["c1"][name]
            lines.append(
                f"| {name} | {c64['rps_vs_base']:.2f} | {c64['cpu_us_per_req_vs_base']:.2f} "
                f"| {c1['p50_us_vs_base']:.2f} | {c1['p99_us_vs_base']:.2f} "
                f"| {c1['cpu_us_per_req_vs_base']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def per_round_markdown(rounds, target_names):
    lines = ["| round | load | target | req/s | p50 µs | p99 µs | CPU µs/req | upstream CPU µs/req | RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rounds, 1):
        for load, _, _ in LOADS:
            for name in target_names:
                m = r[load][name]
                lines.append(
                    f"| {i} | {load} | {name} | {m['rps']:,.0f} | {m['p50_us']} | {m['p99_us']} "
                    f"| {m['cpu_us_per_req']:.1f} | {m['upstream_cpu_us_per_req']:.1f} "
                    f"| {m['peak_rss_mib']:.1f} |"
                )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Login storm


def lowest_priority():
    """Nice 19 and, on Linux, the idle scheduling class: at nice 19 alone a running
    client keeps its core for the rest of its time slice when wrk, a proxy or the
    upstream wakes up; an idle-class one gives it up at once."""
    os.nice(19)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def login_storm(target, reference, upstream, args, lua, body):
    """The target and the reference nginx at c=1, alone and under a sign-in storm
    against the target, alternating, `rounds` times.

    The storm shares the machine's cores with everything else (its own clients, the
    argon2 work, wrk, the upstream), so it moves every process's tail latency, the
    reference nginx's included. Measuring the reference under the same storm tells
    what the storm does to the machine from what it does to the gateway."""
    storm = target["storm"]
    client = str(Path(__file__).with_name("client.py"))
    pairs = []
    for number in range(args.rounds):
        alone_ref = measure(reference, reference["proxy"], upstream, 1, 1, args.duration, lua, body)
        alone = measure(target, target["proxy"], upstream, 1, 1, args.duration, lua, body)
        process = subprocess.Popen(
            [
                sys.executable, client, "storm", "--base", storm["base"],
                "--email", storm["email"], "--password", storm["password"],
                "--concurrency", str(args.storm_concurrency),
                "--seconds", str(2 * args.duration + 3),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # The storm's clients stand for browsers on other machines: on these
            # shared cores they must not outrank the proxy, wrk or the upstream.
            preexec_fn=lowest_priority,
        )
        try:
            time.sleep(1)  # the storm is under way before the load starts
            stormy_ref = measure(
                reference, reference["proxy"], upstream, 1, 1, args.duration, lua, body
            )
            stormy = measure(target, target["proxy"], upstream, 1, 1, args.duration, lua, body)
            out, err = process.communicate(timeout=2 * args.duration + 90)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            raise BenchError(f"login storm failed: {err.strip()} {out.strip()}")
        logins = json.loads(out.strip().splitlines()[-1])
        pairs.append({
            "alone": alone, "storm": stormy,
            "reference_alone": alone_ref, "reference_storm": stormy_ref,
            "logins": logins,
        })
        print(
            f"storm {number + 1}: p99 alone {alone['p99_us']} µs, under storm {stormy['p99_us']} µs "
            f"(p50 {alone['p50_us']} → {stormy['p50_us']} µs); reference nginx p99 "
            f"{alone_ref['p99_us']} → {stormy_ref['p99_us']} µs; "
            f"{logins['logins']} sign-ins, {logins['logins_per_s']}/s, "
            f"sign-in p50 {logins['login_p50_ms']} ms",
            flush=True,
        )
    return pairs


def storm_markdown(pairs, target_name, concurrency, duration):
    med = statistics.median

    def row(label, key):
        return (
            f"| {label} | {med(p[key]['p50_us'] for p in pairs):,.0f} "
            f"| {med(p[key]['p99_us'] for p in pairs):,.0f} "
            f"| {med(p[key]['rps'] for p in pairs):,.0f} "
            f"| {med(p[key]['cpu_us_per_req'] for p in pairs):.1f} |"
        )

    ratio = med(p["storm"]["p99_us"] / p["alone"]["p99_us"] for p in pairs)
    ratio_ref = med(p["reference_storm"]["p99_us"] / p["reference_alone"]["p99_us"] for p in pairs)
    versus = med(p["storm"]["p99_us"] / p["reference_storm"]["p99_us"] for p in pairs)
    return "\n".join([
        f"### Login storm: `{target_name}` and the reference nginx at c=1, alone and during "
        f"{concurrency} concurrent password sign-ins against the gateway (full argon2 cost), "
        f"{duration} s × {len(pairs)}, medians",
        "",
        "| | p50 µs | p99 µs | req/s | CPU µs/req |",
        "|---|---|---|---|---|",
        row(f"{target_name}, alone", "alone"),
        row(f"{target_name}, during storm", "storm"),
        row("nginx, alone", "reference_alone"),
        row("nginx, during the same storm", "reference_storm"),
        "",
        f"p99 during the storm ÷ p99 alone (median of rounds): **{ratio:.2f}** for "
        f"`{target_name}` (target ≤ 2), {ratio_ref:.2f} for the reference nginx; "
        f"`{target_name}` p99 ÷ nginx p99 during the storm: {versus:.2f}. "
        f"Sign-ins completed per storm: "
        f"{', '.join(str(p['logins']['logins']) for p in pairs)} "
        f"(median {med(p['logins']['logins_per_s'] for p in pairs):.1f}/s, sign-in p50 "
        f"{med(p['logins']['login_p50_ms'] for p in pairs):.0f} ms).",
        "",
    ])


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--targets", required=True, help="JSON file describing the targets")
    ap.add_argument("--upstream-master", type=int, required=True)
    ap.add_argument("--body", required=True, help="file with the expected body")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--storm-concurrency", type=int, default=8)
    ap.add_argument("--facts", help="machine/build facts to copy into the results")
    ap.add_argument("--out", required=True, help="results file (.md); .json written beside it")
    args = ap.parse_args()

    lua = str(Path(__file__).with_name("report.lua"))
    body = Path(args.body).read_bytes()
    upstream = Proxy("upstream", args.upstream_master, True)
    spec = json.loads(Path(args.targets).read_text())
    targets = []
    for t in spec["targets"]:
        t["proxy"] = Proxy(t["name"], t["pid"], t.get("nginx", False), t.get("also", ()))
        targets.append(t)
    if targets[0]["name"] != REFERENCE:
        raise BenchError(f"the first target must be the reference `{REFERENCE}`")
    main_names = [t["name"] for t in targets if not t.get("scale")]
    scale_names = [t["name"] for t in targets if t.get("scale")]
    names = [t["name"] for t in targets]
    baseline = spec.get("baseline", REFERENCE)

    started = time.monotonic()
    load_before = os.getloadavg()
    print(f"warm-up: {args.warmup} s per target at c=64", flush=True)
    for target in targets:
        check_target(target, body)
        run_wrk(target, 64, 2, args.warmup, lua)

    rounds = []
    for number in range(args.rounds):
        # Rotate the order each round so no target always runs first or last.
        order = targets[number % len(targets) :] + targets[: number % len(targets)]
        result = {}
        for load, connections, threads in LOADS:
            result[load] = {}
            for target in order:
                m = measure(
                    target, target["proxy"], upstream, connections, threads,
                    args.duration, lua, body,
                )
                result[load][target["name"]] = m
                print(
                    f"round {number + 1} {load:>3} {target['name']:<32} "
                    f"{m['rps']:>9,.0f} req/s  p50 {m['p50_us']:>5} µs  p99 {m['p99_us']:>6} µs  "
                    f"cpu {m['cpu_us_per_req']:5.1f} µs/req  rss {m['peak_rss_mib']:.1f} MiB",
                    flush=True,
                )
        rounds.append(result)

    storm_target = next((t for t in targets if t.get("storm")), None)
    reference = targets[0]
    storm = (
        login_storm(storm_target, reference, upstream, args, lua, body) if storm_target else []
    )

    summary = summarize(rounds, names, baseline)
    meta = {
        "duration": args.duration,
        "rounds": args.rounds,
        "elapsed_s": round(time.monotonic() - started),
        "clk_tck": CLK_TCK,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "facts": Path(args.facts).read_text() if args.facts else "",
        "nginx_workers": len(targets[0]["proxy"].pids()),
        "upstream_workers": len(upstream.pids()),
        "host": platform.node(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    table = markdown(summary, main_names, scale_names, baseline, meta)
    if storm:
        table += "\n" + storm_markdown(
            storm, storm_target["name"], args.storm_concurrency, args.duration
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    load_line = (
        f"Load average (1/5/15 min) before: {' '.join(map(str, meta['loadavg_before']))}; "
        f"after: {' '.join(map(str, meta['loadavg_after']))}. Measurement took {meta['elapsed_s']} s."
    )
    out.write_text(
        f"# Portcullis benchmark, {meta['time_utc']}\n\n```\n{meta['facts']}```\n\n{load_line}\n\n{table}\n"
        f"<details><summary>Every round</summary>\n\n{per_round_markdown(rounds, names)}\n\n</details>\n"
    )
    for t in targets:
        # Credentials stay out of the results.
        t.pop("proxy", None)
        t.pop("storm", None)
        t["headers"] = [h.split(":", 1)[0] + ": ..." for h in t["headers"]]
    out.with_suffix(".json").write_text(
        json.dumps(
            {"meta": meta, "targets": targets, "summary": summary, "rounds": rounds, "storm": storm},
            indent=2,
        )
        + "\n"
    )
    print()
    print(load_line)
    print()
    print(table)


if __name__ == "__main__":
    try:
        main()
    except BenchError as err:
        print(f"BENCHMARK FAILED: {err}", file=sys.stderr)
        sys.exit(1)
