#!/usr/bin/env python3
"""Query and dashboard render times against a running aggregator (issue 7,
benchmark 4), meant to run while vigil-loadgen drives it (latency.sh starts
it beside the probe).

Signs in to the dashboard as USER (password on stdin), then for SECONDS
seconds, round after round: times the Prometheus-compatible API (an instant
aggregation over every host, a range query of one series and a range
aggregation over the last 10 minutes) with the admin token, and the
dashboard's overview, hosts and alerts pages with the session. Prints one
RESULT line per request kind (n, p50, p99, max in ms, errors, empty answers)
and exits 1 if a request failed or every answer of a kind was empty.

Usage: under_load.py HTTP TOKEN_FILE USER SECONDS [COUNTER SERIES] < password
  COUNTER  a counter every host sends (default: vigil-loadgen's
           system_context_switches_total)
  SERIES   a selector of one series (default: vigil-loadgen's first host's
           system_uptime_seconds)
"""

import http.cookiejar
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class Empty(Exception):
    """A query answered, with no series (early in a run, before a rate has
    two samples): counted, not timed, and not a failure unless every answer
    of its kind is empty."""


def percentile(values, q):
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.1f}"


def main():
    addr, token_file, user, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    counter = sys.argv[5] if len(sys.argv) > 5 else "system_context_switches_total"
    one = sys.argv[6] if len(sys.argv) > 6 else 'system_uptime_seconds{host="loadgen-00000.loadgen"}'
    password = sys.stdin.read().strip()
    base = f"http://{addr}"
    with open(token_file, encoding="utf-8") as f:
        token = f.read().strip()

    jar = http.cookiejar.CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = web.open(f"{base}/login", timeout=10).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if not csrf:
        print("under_load: no csrf_token on the login form", file=sys.stderr)
        return 1
    body = urllib.parse.urlencode(
        {"username": user, "password": password, "csrf_token": csrf.group(1), "next": "/"}
    ).encode()
    web.open(f"{base}/login", data=body, timeout=10).read()
    if not any(c.name for c in jar):
        print("under_load: sign-in set no cookie", file=sys.stderr)
        return 1

    def api(path, params):
        now = time.time()
        params = {k: (v(now) if callable(v) else v) for k, v in params.items()}
        req = urllib.request.Request(
            f"{base}{path}?{urllib.parse.urlencode(params)}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            data = json.load(r)
        if data.get("status") != "success":
            raise ValueError(f"failed answer: {str(data)[:200]}")
        if not data["data"]["result"]:
            raise Empty()

    def page(path, needle):
        def fetch():
            with web.open(f"{base}{path}", timeout=30) as r:
                text = r.read().decode()
            if needle not in text:
                raise ValueError(f"{path}: {needle!r} not in the page (signed out?)")

        return fetch

    kinds = {
        "query_instant_sum_by_host": lambda: api(
            "/prometheus/api/v1/query",
            {"query": f"sum by (host) (rate({counter}[5m]))"},
        ),
        "query_range_one_series_10m": lambda: api(
            "/prometheus/api/v1/query_range",
            {
                "query": one,
                "start": lambda n: n - 600,
                "end": lambda n: n,
                "step": "15",
            },
        ),
        "query_range_sum_by_host_10m": lambda: api(
            "/prometheus/api/v1/query_range",
            {
                "query": f"sum by (host) (rate({counter}[1m]))",
                "start": lambda n: n - 600,
                "end": lambda n: n,
                "step": "15",
            },
        ),
        "page_overview": page("/", "Overview"),
        "page_hosts": page("/hosts", "Hosts"),
        "page_alerts": page("/alerts", "Alerts"),
    }
    times = {k: [] for k in kinds}
    errors = {k: 0 for k in kinds}
    empty = {k: 0 for k in kinds}
    first_error = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for kind, run in kinds.items():
            t0 = time.monotonic()
            try:
                run()
                times[kind].append((time.monotonic() - t0) * 1000)
            except Empty:
                empty[kind] += 1
            except (OSError, ValueError, KeyError, urllib.error.URLError) as e:
                errors[kind] += 1
                first_error.setdefault(kind, str(e))
        time.sleep(0.2)
    failed = False
    for kind in kinds:
        v = times[kind]
        print(
            f"RESULT kind={kind} n={len(v)} p50_ms={percentile(v, 0.5)} "
            f"p99_ms={percentile(v, 0.99)} max_ms={percentile(v, 1.0)} errors={errors[kind]} "
            f"empty={empty[kind]}"
        )
        if errors[kind] or not v:
            failed = True
            print(
                f"under_load: {kind}: {first_error.get(kind, 'every answer was empty')}",
                file=sys.stderr,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
