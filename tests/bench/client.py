#!/usr/bin/env python3
"""HTTP client chores for the Portcullis benchmark. Standard library only.

  signin  signs in once through /.portcullis/login and prints the session cookie value
  storm   password sign-ins from N threads in a loop until a deadline; prints a JSON summary
  loop    a fixed number of keep-alive GETs, each checked for status 200 and the exact body
          (the bounded request loop the callgrind profile is taken over)

The bench gateway serves plain HTTP. Browsers (and curl's cookie engine) keep `Secure`
and `__Host-` cookies away from http:// origins, so this client reads `Set-Cookie`
itself and sends the values back in a `Cookie` header. The sign-in form's checks are
met as a browser on that origin would: the CSRF cookie from the form page, the same
token in the form field, and `Origin: http://<host:port>`.
"""

import argparse
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse

LOGIN = "/.portcullis/login"
SESSION_COOKIE = "__Host-portcullis"
CSRF_COOKIE = "__Host-portcullis-csrf"


class ClientError(Exception):
    """The gateway answered something other than what a sign-in or check expects."""


def cookies_from(response):
    """name -> value of every Set-Cookie in a response."""
    found = {}
    for header, value in response.getheaders():
        if header.lower() != "set-cookie":
            continue
        pair = value.split(";", 1)[0]
        name, _, val = pair.partition("=")
        found[name.strip()] = val.strip()
    return found


class Browser:
    """One keep-alive connection that signs in like a browser on an http:// origin."""

    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        self.host = url.hostname
        self.port = url.port
        self.origin = f"{url.scheme}://{url.netloc}"
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.csrf = None

    def form_token(self):
        self.conn.request("GET", LOGIN, headers={"Accept": "text/html"})
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise ClientError(f"GET {LOGIN}: status {response.status}")
        token = cookies_from(response).get(CSRF_COOKIE)
        field = re.search(rb'name="csrf" value="([0-9a-f]{64})"', body)
        if not token or not field or field.group(1).decode() != token:
            raise ClientError(f"GET {LOGIN}: no CSRF cookie matching the form field")
        self.csrf = token

    def sign_in(self, email, password):
        """Returns the session cookie value, or raises."""
        if self.csrf is None:
            self.form_token()
        form = urllib.parse.urlencode(
            {"csrf": self.csrf, "email": email, "password": password, "rd": "/app"}
        )
        self.conn.request(
            "POST",
            LOGIN,
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"{CSRF_COOKIE}={self.csrf}",
                "Origin": self.origin,
                "Accept": "text/html",
            },
        )
        response = self.conn.getresponse()
        response.read()
        session = cookies_from(response).get(SESSION_COOKIE)
        if response.status != 303 or not session:
            raise ClientError(f"POST {LOGIN}: status {response.status}, no session cookie")
        return session


def signin(args):
    print(Browser(args.base).sign_in(args.email, args.password))


def storm(args):
    """N threads sign in again and again until the deadline; every sign-in must succeed."""
    deadline = time.monotonic() + args.seconds
    done = []
    failures = []
    lock = threading.Lock()

    def worker():
        browser = Browser(args.base)
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                browser.sign_in(args.email, args.password)
            except (ClientError, OSError, http.client.HTTPException) as err:
                with lock:
                    failures.append(str(err))
                browser = Browser(args.base)
                continue
            with lock:
                done.append(time.monotonic() - started)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + 60)
    elapsed = time.monotonic() - began
    done.sort()
    summary = {
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 1),
        "logins": len(done),
        "failures": len(failures),
        "logins_per_s": round(len(done) / elapsed, 2) if elapsed else 0,
        "login_p50_ms": round(1000 * done[len(done) // 2], 1) if done else None,
        "first_failure": failures[0] if failures else None,
    }
    print(json.dumps(summary))
    if failures:
        sys.exit(1)


def loop(args):
    """`count` GETs on one keep-alive connection; each must be 200 with the exact body."""
    url = urllib.parse.urlsplit(args.url)
    body = open(args.body, "rb").read()
    headers = {}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    for number in range(args.count):
        conn.request("GET", url.path or "/", headers=headers)
        response = conn.getresponse()
        got = response.read()
        if response.status != 200 or got != body:
            raise ClientError(
                f"request {number + 1} to {args.url}: status {response.status}, "
                f"{len(got)} bytes: {got[:200]!r}"
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    one = sub.add_parser("signin")
    one.add_argument("--base", required=True)
    one.add_argument("--email", required=True)
    one.add_argument("--password", required=True)
    many = sub.add_parser("storm")
    many.add_argument("--base", required=True)
    many.add_argument("--email", required=True)
    many.add_argument("--password", required=True)
    many.add_argument("--concurrency", type=int, default=8)
    many.add_argument("--seconds", type=float, default=30)
    fixed = sub.add_parser("loop")
    fixed.add_argument("--url", required=True)
    fixed.add_argument("--body", required=True)
    fixed.add_argument("--count", type=int, required=True)
    fixed.add_argument("--header", action="append", default=[])
    args = ap.parse_args()
    try:
        {"signin": signin, "storm": storm, "loop": loop}[args.command](args)
    except (ClientError, OSError, http.client.HTTPException) as err:
        print(f"client.py {args.command}: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
