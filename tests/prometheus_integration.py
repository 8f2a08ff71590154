#!/usr/bin/env python3
"""End-to-end test of stallwatch's metrics against a real Prometheus.

Checks, in order:
  1. the alert rules load (promtool check rules) and pass their unit tests
     (promtool test rules dashboards/stallwatch-alerts.test.yml);
  2. the Grafana dashboard is well formed: a datasource template variable
     that every panel uses, the rows the issue asks for, a heatmap of stall
     durations, and every metric of DESIGN.md queried somewhere;
  3. (unless --rules-only) a running stallwatch-metrics-example, which stalls
     on purpose, serves /metrics that pass `promtool check metrics`; a real
     Prometheus (loopback only, temporary storage, 1 s scrape interval, free
     ports) scrapes it; through Prometheus's HTTP API the stall counters
     arrive by kind, the blocking-call counter by function, the alert rules
     evaluate without error, and every dashboard query (template variables
     substituted) evaluates without error and returns data;
  4. the example exits cleanly (status 0) on SIGTERM while being scraped;
  5. with its port in use the example logs one clear line (text or JSON)
     and runs on;
  6. with --service-exposer the example serves stallwatch's metrics from its
     own prometheus-cpp Exposer (register_metrics) and the built-in endpoint
     stays off.

Prometheus and promtool come from the Debian package `prometheus`; when they
are missing, scripts/install-deps.sh installs them. Everything started here is
stopped here.

  tests/prometheus_integration.py --example build/examples/stallwatch-metrics-example \
      --dashboards dashboards [--rules-only]
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

JOB = "stallwatch-example"
# Values for Grafana's built-in variables when a query is evaluated here:
# the rate window spans several 1 s scrapes, as $__rate_interval would.
BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__range": "1m"}
DESIGN_METRICS = [
    "stallwatch_slices_total", "stallwatch_slice_duration_seconds", "stallwatch_current_slice_seconds",
    "stallwatch_stalls_total", "stallwatch_stall_duration_seconds", "stallwatch_stall_reports_total",
    "stallwatch_stall_reports_suppressed_total", "stallwatch_loop_lag_seconds", "stallwatch_fibers",
    "stallwatch_ready_fibers", "stallwatch_fibers_spawned_total", "stallwatch_blocking_calls_total",
    "stallwatch_in_thread_pending", "stallwatch_in_thread_duration_seconds", "stallwatch_threshold_seconds",
]
# The PostgreSQL client's metrics (docs/METRICS.md): the dashboard must use
# them, but the stalling example runs no queries, so the live check leaves
# their panels out (tests/pg_test.cpp checks their values against a server).
PG_METRICS = [
    "stallwatch_pg_queries_total", "stallwatch_pg_query_duration_seconds", "stallwatch_pg_pool_connections",
    "stallwatch_pg_pool_connections_in_use", "stallwatch_pg_pool_waits_total",
]
REQUIRED_ROWS = ["Stalls", "Slices", "Loop lag", "Fibers", "Blocking calls", "Offload pool", "PostgreSQL"]
KINDS = {"cpu", "blocked", "preempted"}


class Failure(Exception):
    pass


def log(msg):
    print(f"prometheus_integration: {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# ---------------------------------------------------------------- tools

def ensure_prometheus(repo_root):
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    installer = os.path.join(repo_root, "scripts", "install-deps.sh")
    log(f"prometheus/promtool missing: running {installer}")
    subprocess.run(["bash", installer, "test"], check=False)
    check(shutil.which("prometheus") and shutil.which("promtool"),
          "prometheus and promtool are still missing: install the Debian package 'prometheus'")


def run_tool(args, cwd=None, stdin=None):
    proc = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    check(proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out}")
    return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def wait_for(what, fn, timeout, interval=0.5):
    """Calls fn until it returns a true value or raises nothing; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except (OSError, urllib.error.URLError, Failure, ValueError) as e:
            last = e
        time.sleep(interval)
    raise Failure(f"timed out after {timeout} s waiting for {what}" + (f": {last}" if last else ""))


# ---------------------------------------------------------------- rules and dashboard

def check_rules(dashboards):
    log(run_tool(["promtool", "check", "rules", "stallwatch-alerts.yml"], cwd=dashboards).splitlines()[-1])
    run_tool(["promtool", "test", "rules", "stallwatch-alerts.test.yml"], cwd=dashboards)
    log("alert rule unit tests pass")


def panels_of(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def dashboard_queries(dashboard):
    """(panel title, expr) for every panel target."""
    out = []
    for p in panels_of(dashboard):
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def variable_queries(dashboard):
    out = []
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((v["name"], q))
    return out


def check_dashboard(path):
    with open(path) as f:
        dashboard = json.load(f)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables.get("datasource")
    check(ds is not None and ds["type"] == "datasource" and ds["query"] == "prometheus",
          "the dashboard needs a 'datasource' template variable of type datasource (prometheus)")
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    for wanted in REQUIRED_ROWS:
        check(any(r.startswith(wanted) for r in rows), f"dashboard row '{wanted}' missing (rows: {rows})")
    for p in panels_of(dashboard):
        if p["type"] == "row":
            continue
        check(p.get("datasource", {}).get("uid") == "${datasource}",
              f"panel '{p['title']}' does not use the $datasource variable")
        for t in p.get("targets", []):
            check(t.get("datasource", {}).get("uid") == "${datasource}",
                  f"a target of panel '{p['title']}' does not use the $datasource variable")
    check(any(p["type"] == "heatmap" and "stallwatch_stall_duration_seconds_bucket" in t["expr"]
              for p in panels_of(dashboard) for t in p.get("targets", [])),
          "no heatmap of stallwatch_stall_duration_seconds")
    exprs = " ".join(e for _, e in dashboard_queries(dashboard))
    for name in DESIGN_METRICS + PG_METRICS:
        check(re.search(re.escape(name) + r"(_bucket|_sum|_count)?\b", exprs),
              f"no dashboard query uses {name}")
    log(f"dashboard well formed: {len(dashboard_queries(dashboard))} queries, rows {rows}")
    return dashboard


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        check(name in values, f"unknown template variable ${name} in {expr}")
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


# ---------------------------------------------------------------- the live part

class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = http_get(url, timeout=10)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        reply = json.loads(body)
        if reply.get("status") != "success":
            raise Failure(f"query failed: {expr}\n  {reply.get('errorType')}: {reply.get('error')}")
        return reply["data"]

    def series(self, match):
        url = self.base + "/api/v1/series?" + urllib.parse.urlencode({"match[]": match})
        return json.loads(http_get(url, timeout=10))["data"]

    def get(self, path):
        return json.loads(http_get(self.base + path, timeout=10))["data"]


def finite_values(data):
    values = []
    if data["resultType"] == "vector":
        values = [float(r["value"][1]) for r in data["result"]]
    elif data["resultType"] == "scalar":
        values = [float(data["result"][1])]
    return [v for v in values if math.isfinite(v)]


def stalls_by_kind(prom, instance):
    data = prom.query(f'sum by (kind) (stallwatch_stalls_total{{job="{JOB}",instance="{instance}"}})')
    return {r["metric"].get("kind", ""): float(r["value"][1]) for r in data["result"]}


def check_endpoint_failures(args):
    """A port in use: one clear log line (text, then JSON) naming the address
    and the reason; the program runs on and exits cleanly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        for log_format in ("text", "json"):
            env = dict(os.environ, STALLWATCH_METRICS_ADDR=address, STALLWATCH_LOG_FORMAT=log_format)
            proc = subprocess.run([args.example, "--seconds", "2"], env=env, capture_output=True, text=True,
                                  timeout=120)
            check(proc.returncode == 0, f"with the metrics port in use the example exited with {proc.returncode}")
            output = proc.stdout + proc.stderr
            if log_format == "text":
                lines = [l for l in output.splitlines() if "metrics endpoint" in l]
                check(len(lines) == 1 and f'not started at "{address}"' in lines[0]
                      and "Address already in use" in lines[0],
                      f"expected one line naming {address} and the reason, got {lines}")
            else:
                events = [json.loads(l) for l in output.splitlines() if '"metrics_endpoint"' in l]
                check(len(events) == 1 and events[0]["status"] == "failed" and events[0]["address"] == address
                      and "Address already in use" in events[0]["error"],
                      f"expected one JSON metrics_endpoint failure for {address}, got {events}")
    log("a port in use: one log line (text and JSON) naming the address and reason; the program runs on")


def check_service_exposer(args, workdir):
    """--service-exposer: stallwatch's metrics come from the program's own
    exposer (register_metrics), and the built-in endpoint stays off even
    though STALLWATCH_METRICS_ADDR names an address."""
    own_port, builtin_port = free_port(), free_port()
    env = dict(os.environ, STALLWATCH_METRICS_ADDR=f"127.0.0.1:{builtin_port}")
    with open(os.path.join(workdir, "service-exposer.log"), "w") as out:
        example = subprocess.Popen([args.example, "--seconds", "600", "--service-exposer", f"127.0.0.1:{own_port}"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            text = wait_for("the service exposer's /metrics",
                            lambda: "stallwatch_slices_total" in (t := http_get(f"http://127.0.0.1:{own_port}/metrics"))
                            and t, timeout=30)
            run_tool(["promtool", "check", "metrics"], stdin=text)
            try:
                http_get(f"http://127.0.0.1:{builtin_port}/metrics", timeout=2)
                raise Failure("the built-in endpoint runs although the service registered its own exposer")
            except (urllib.error.URLError, OSError):
                pass
            example.send_signal(signal.SIGTERM)
            rc = example.wait(timeout=30)
            check(rc == 0, f"the example (--service-exposer) exited with status {rc}")
        finally:
            if example.poll() is None:
                example.kill()
                example.wait()
    log("register_metrics: served by the service's exposer, built-in endpoint off")


def check_live(args, dashboard, workdir):
    example_port, prom_port = free_port(), free_port()
    instance = f"127.0.0.1:{example_port}"
    procs = []
    example_log = open(os.path.join(workdir, "example.log"), "w")
    prom_log = open(os.path.join(workdir, "prometheus.log"), "w")
    try:
        env = dict(os.environ, STALLWATCH_METRICS_ADDR=instance, STALLWATCH_THRESHOLD_MS="50")
        example = subprocess.Popen([args.example, "--seconds", "600"], env=env,
                                   stdout=example_log, stderr=subprocess.STDOUT)
        procs.append(example)
        scrape = wait_for("the example's /metrics",
                          lambda: "stallwatch_stalls_total" in (t := http_get(f"http://{instance}/metrics")) and t,
                          timeout=30)
        run_tool(["promtool", "check", "metrics"], stdin=scrape)
        log(f"example serves /metrics at {instance}; promtool check metrics passes")

        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {os.path.abspath(os.path.join(args.dashboards, 'stallwatch-alerts.yml'))}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ['{instance}']
""")
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=prom_log, stderr=subprocess.STDOUT)
        procs.append(prometheus)
        prom = Prometheus(prom_port)
        wait_for("Prometheus to be ready", lambda: "Ready" in http_get(prom.base + "/-/ready"), timeout=60)
        log(f"Prometheus ready at {prom.base}")

        kinds = wait_for("cpu and blocked stalls to arrive in Prometheus",
                         lambda: (k := stalls_by_kind(prom, instance)).get("cpu", 0) > 0
                         and k.get("blocked", 0) > 0 and k, timeout=120)
        check(set(kinds) == KINDS, f"stall kinds {sorted(kinds)}, expected {sorted(KINDS)}")
        log(f"stalls by kind arrived: {kinds}")

        blocking = prom.query(f'stallwatch_blocking_calls_total{{job="{JOB}",function="usleep"}}')
        check(finite_values(blocking) and finite_values(blocking)[0] > 0,
              f"no usleep in stallwatch_blocking_calls_total: {blocking}")
        log("blocking calls arrived by function (usleep)")
        reports = prom.query(f'stallwatch_blocking_call_reports_total{{job="{JOB}"}}')
        check(finite_values(reports) and finite_values(reports)[0] > 0,
              f"the usleep call site was not counted in stallwatch_blocking_call_reports_total: {reports}")
        held_back = prom.query(f'stallwatch_blocking_call_reports_suppressed_total{{job="{JOB}"}}')
        check(len(finite_values(held_back)) == 1, f"no stallwatch_blocking_call_reports_suppressed_total: {held_back}")
        log("blocking-call reports counted (logged and held back)")

        values = dict(BUILTINS, job=JOB, instance=re.escape(instance).replace("\\", "\\\\"), loop=".*", datasource="prometheus")
        for name, query in variable_queries(dashboard):
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", substitute(query, values))
            check(m, f"variable {name}: expected label_values(selector, label), got {query}")
            found = {s.get(m.group(2)) for s in prom.series(m.group(1))} - {None}
            check(found, f"variable {name}: {query} finds no values")
        log(f"{len(variable_queries(dashboard))} template variable queries find values")

        pending = {expr: title for title, expr in dashboard_queries(dashboard)
                   if not any(name in expr for name in PG_METRICS)}
        errors = {}

        def evaluate_all():
            for expr in list(pending):
                try:
                    data = prom.query(substitute(expr, values))
                except Failure as e:
                    errors[expr] = str(e)
                    continue
                if finite_values(data):
                    del pending[expr]
                    errors.pop(expr, None)
                else:
                    errors[expr] = f"no data: {json.dumps(data)[:300]}"
            return not pending

        try:
            wait_for("every dashboard query to return data", evaluate_all, timeout=60, interval=2)
        except Failure:
            detail = "\n".join(f"  [{pending[e]}] {e}\n    {errors.get(e)}" for e in pending)
            raise Failure(f"{len(pending)} dashboard queries fail or return no data:\n{detail}")
        log(f"all {len(dashboard_queries(dashboard))} dashboard queries evaluate and return data")

        def rules_healthy():
            rules = [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]
            bad = [(r["name"], r.get("health"), r.get("lastError")) for r in rules if r.get("health") != "ok"]
            check(len(rules) == 3, f"expected 3 alert rules loaded, got {len(rules)}")
            check(not bad, f"rules not healthy: {bad}")
            return True
        wait_for("the alert rules to evaluate cleanly", rules_healthy, timeout=30)
        log("alert rules loaded and evaluate without error")

        example.send_signal(signal.SIGTERM)
        rc = example.wait(timeout=30)
        check(rc == 0, f"the example exited with status {rc} after SIGTERM (see {example_log.name})")
        log("example exited cleanly on SIGTERM")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        example_log.close()
        prom_log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", help="path to stallwatch-metrics-example")
    parser.add_argument("--dashboards", required=True, help="the dashboards/ folder")
    parser.add_argument("--rules-only", action="store_true", help="check rules and dashboard, start nothing")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, TSDB)")
    args = parser.parse_args()
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    workdir = tempfile.mkdtemp(prefix="stallwatch-prom-")
    try:
        ensure_prometheus(repo_root)
        check_rules(args.dashboards)
        dashboard = check_dashboard(os.path.join(args.dashboards, "stallwatch.json"))
        if not args.rules_only:
            check(args.example, "--example is required unless --rules-only")
            check_endpoint_failures(args)
            check_service_exposer(args, workdir)
            check_live(args, dashboard, workdir)
    except Failure as e:
        for name in ("example.log", "prometheus.log"):
            path = os.path.join(workdir, name)
            if os.path.exists(path):
                with open(path) as f:
                    tail = f.read()[-3000:]
                print(f"--- last lines of {name}:\n{tail}", file=sys.stderr)
        print(f"prometheus_integration: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
