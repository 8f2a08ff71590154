#!/usr/bin/env python3
"""The PostgreSQL client under the blocking-call probes in strict mode.

Run inside a pg_virtualenv cluster (tests/pg_test.sh sets PG*):
    pg_probes_test.py PG_SESSION

A whole stallwatch::pg session trips no blocking-call report (exit 0, no
report on stderr); each of libpq's synchronous calls made on a loop ends the
process in strict mode with a report naming the call and advising
stallwatch::pg.
"""
import os
import subprocess
import sys

STRICT_EXIT = 70
session = sys.argv[1]
env = dict(os.environ, STALLWATCH_STRICT="1", STALLWATCH_METRICS_ADDR="off")
failures = []


def run(scenario):
    return subprocess.run([session, scenario], env=env, capture_output=True, text=True, timeout=120)


r = run("session")
if r.returncode != 0 or "session ok" not in r.stdout or "blocking call" in r.stderr:
    failures.append(f"session: status {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")

functions = ["PQexec", "PQexecParams", "PQprepare", "PQexecPrepared", "PQconnectdb", "PQconnectdbParams",
             "PQgetResult", "PQcancel"]
for function in functions:
    r = run(function)
    # The report names the call and advises the cooperative client.
    if (r.returncode != STRICT_EXIT or function not in r.stderr or "stallwatch::pg" not in r.stderr
            or f"{function} returned" in r.stdout):
        failures.append(f"{function}: status {r.returncode} (want {STRICT_EXIT})\nstdout: {r.stdout}\n"
                        f"stderr: {r.stderr}")

for f in failures:
    print("FAIL", f)
print(f"{len(functions) + 1 - len(failures)} of {len(functions) + 1} scenarios as expected")
sys.exit(1 if failures else 0)
