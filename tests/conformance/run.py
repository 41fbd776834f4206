"""run.py - one Autobahn testsuite run for tests/autobahn.sh, and its summary.

    run.py server URL CASES -- CMD...    start CMD (the server under test), wait
                                         until URL's port listens, fuzz URL with
                                         wstest's fuzzingclient, stop CMD
    run.py client PORT CASES -- CMD...   start wstest's fuzzingserver on
                                         127.0.0.1:PORT, run CMD (the client
                                         under test) to its end, stop the server
    run.py summary DIR                   summarise the reports in DIR again

URL must be ws://127.x.x.x:PORT/PATH: everything stays on loopback (and
wstest_loopback.py binds wstest's own sockets to 127.0.0.1). CASES is a
comma-separated list of case ids and patterns ("1.*,12.1.3"). The client
gets AUTOBAHN_AGENT; it asks the fuzzing server for the case count
(/getCaseCount), runs /runCase?case=N&agent=A for each, then
/updateReports?agent=A, which writes the reports.

Environment:
    AUTOBAHN_OUT          output directory (default target/autobahn-reports):
                          reports in servers/ or clients/, logs beside them
    AUTOBAHN_TIMEOUT      wall-clock limit of a run in seconds (default 3600)
    AUTOBAHN_REQUIRE_ALL  1 (default): UNIMPLEMENTED cases count as failed;
                          0: they are listed but counted in neither number
    AUTOBAHN_AGENT        agent name in the reports (default wsbox)
    AUTOBAHN_HOME, ...    where the testsuite is installed: see install.py

Counting: a case passed when its behavior is OK, NON-STRICT or INFORMATIONAL
and its closing behavior is not FAILED; it failed when its behavior is
FAILED or anything unknown (or UNIMPLEMENTED, see above), when its closing
behavior is FAILED, or when it was selected but has no result.

Exit status: 0 every selected case passed, 1 some failed, 2 the run could not
be done or is incomplete (install, port in use, timeout, missing results, a
non-zero exit of wstest or of the client). The last line printed is always
"N passed, M failed".
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from install import InstallError, ensure_wstest  # noqa: E402

START_TIMEOUT = 30  # seconds for a server to listen
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
selected = []  # the run's case ids, once known: a failed run counts them all failed


class RunError(Exception):
    """The run could not be done (exit status 2)."""


def log(message):
    print("autobahn: " + message, file=sys.stderr, flush=True)


def env_int(name, default):
    value = os.environ.get(name, str(default))
    if not value.isdigit():
        raise RunError("%s must be a whole number of seconds, not %r" % (name, value))
    return int(value)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start(cmd, logpath, pipe=False, env=None):
    """Start cmd in a process group of its own, output to logpath (or to a
    pipe, for Progress)."""
    out = subprocess.PIPE if pipe else open(logpath, "w")
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, universal_newlines=pipe)
    except OSError as e:
        raise RunError("cannot start %s: %s" % (cmd[0], e))
    finally:
        if not pipe:
            out.close()


def stop(proc):
    """Stop proc's whole process group: SIGTERM, then SIGKILL after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()


def wait_listening(proc, port, name, logpath):
    deadline = time.time() + START_TIMEOUT
    while not port_open(port):
        if proc.poll() is not None:
            raise RunError("%s exited (status %d) before listening on 127.0.0.1:%d; log: %s%s"
                           % (name, proc.returncode, port, logpath, tail(logpath)))
        if time.time() > deadline:
            raise RunError("%s did not listen on 127.0.0.1:%d within %d s; log: %s%s"
                           % (name, port, START_TIMEOUT, logpath, tail(logpath)))
        time.sleep(0.2)


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "\n" + "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


class Progress(threading.Thread):
    """Copies wstest's output to its log and prints a case count every 50."""

    def __init__(self, proc, logpath, total):
        super().__init__(daemon=True)
        self.proc, self.logpath, self.total = proc, logpath, total
        self.dropped = None  # wstest's "Connection to ... failed" line, if any

    def run(self):
        done = 0
        with open(self.logpath, "w") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                if line.startswith("Running test case ID"):
                    done += 1
                    if done % 50 == 0 or done == self.total:
                        print("  ... %d/%d cases" % (done, self.total), flush=True)
                elif line.startswith("Connection to ") and self.dropped is None:
                    self.dropped = line.strip()


def run_until(proc, deadline, name):
    """Wait for proc until the wall-clock deadline; stop it and fail after."""
    try:
        return proc.wait(timeout=max(deadline - time.time(), 0))
    except subprocess.TimeoutExpired:
        stop(proc)
        raise RunError("%s timed out (AUTOBAHN_TIMEOUT=%s s)" % (name, os.environ.get("AUTOBAHN_TIMEOUT", 3600)))


# ---------------------------------------------------------------------------
# Specs and reports
# ---------------------------------------------------------------------------

def prepare(wstest, reports, spec_path, spec):
    """Write the spec, clear old reports, return the selected case ids (also
    saved as reports/expected-cases.json, for the summary)."""
    os.makedirs(reports, exist_ok=True)
    for pattern in ("index.json", "index.html", "*_case_*.json", "*_case_*.html", "expected-cases.json"):
        for path in glob.glob(os.path.join(reports, pattern)):
            os.remove(path)
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=2)
    listing = subprocess.run(wstest.command("cases", spec_path), env=wstest.env(), universal_newlines=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if listing.returncode != 0:
        raise RunError("bad case selection %s: %s" % (",".join(spec["cases"]), listing.stderr.strip()))
    ids = listing.stdout.split()
    selected[:] = ids
    with open(os.path.join(reports, "expected-cases.json"), "w") as f:
        json.dump(ids, f)
    return ids


def case_key(case_id):
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def wrapped(items, indent="    ", width=100):
    lines, line = [], indent
    for item in items:
        if len(line) + len(item) > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += item + " "
    return "\n".join(lines + [line.rstrip()])


def counts(label, values, known):
    found = {}
    for v in values:
        found[v] = found.get(v, 0) + 1
    shown = [k for k in known if k in found or k in ("OK", "FAILED")]
    shown += sorted((k for k in found if k not in known), key=str)
    return "  %-15s" % (label + ":") + "  ".join("%s=%d" % (k, found.get(k, 0)) for k in shown)


def summarise(reports, require_all):
    """Print the summary of reports/index.json; return (passed, failed,
    complete), complete being False when selected cases have no result."""
    index = os.path.join(reports, "index.json")
    expected = None
    if os.path.exists(os.path.join(reports, "expected-cases.json")):
        with open(os.path.join(reports, "expected-cases.json")) as f:
            expected = json.load(f)
    with open(index) as f:
        data = json.load(f)
    print("== Autobahn testsuite results: " + index)
    passed = failed = 0
    complete = bool(data)
    if not data:
        print("  no results at all")
        failed = len(expected or [])
    for agent in sorted(data):
        results = data[agent]
        failures, unimplemented = [], []
        for case_id in sorted(results, key=case_key):
            behavior, close = results[case_id].get("behavior"), results[case_id].get("behaviorClose")
            why = []
            if behavior == "UNIMPLEMENTED":
                unimplemented.append(case_id)
                if require_all:
                    why.append("UNIMPLEMENTED")
            elif behavior not in PASSING:
                why.append(str(behavior))
            if close == "FAILED":
                why.append("close FAILED")
            if why:
                failures.append("%s(%s)" % (case_id, "/".join(why)))
            elif behavior in PASSING:
                passed += 1
        missing = [c for c in expected if c not in results] if expected is not None else []
        failed += len(failures) + len(missing)
        complete = complete and not missing
        print("agent %s: %d results%s" % (agent, len(results),
                                          "" if expected is None else " of %d selected cases" % len(expected)))
        print(counts("behavior", [r.get("behavior") for r in results.values()],
                     ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]))
        print(counts("behaviorClose", [r.get("behaviorClose") for r in results.values()],
                     ["OK", "INFORMATIONAL", "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT", "FAILED"]))
        if unimplemented:
            print("  unimplemented (%d, %s): %s" % (
                len(unimplemented), "counted as failed" if require_all else "not counted",
                " ".join(unimplemented) if len(unimplemented) < 4 else unimplemented[0] + " .. " + unimplemented[-1]))
        if failures:
            print("  failed cases (%d):\n%s" % (len(failures), wrapped(failures)))
        if missing:
            print("  selected cases without a result (%d), counted as failed:\n%s" % (len(missing), wrapped(missing)))
        if not failures and not missing:
            print("  failed cases: none")
        slowest = sorted(results.items(), key=lambda kv: -(kv[1].get("duration") or 0))[:3]
        print("  case time: %.1f s in total; slowest: %s" % (
            sum(r.get("duration") or 0 for r in results.values()) / 1000.0,
            ", ".join("%s %d ms" % (c, r.get("duration") or 0) for c, r in slowest)))
    return passed, failed, complete


def finish(reports, expected, require_all, run_ok):
    """Summarise and return the exit status."""
    if not os.path.exists(os.path.join(reports, "index.json")):
        log("no report was written (%s/index.json is missing)" % reports)
        print("0 passed, %d failed" % len(expected))
        return 2
    passed, failed, complete = summarise(reports, require_all)
    print("%d passed, %d failed" % (passed, failed))
    if not (run_ok and complete):
        return 2
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------

def fuzz_server(url, cases, cmd, out, options):
    """wstest's fuzzingclient against the server that cmd starts at url."""
    m = re.match(r"^ws://(127(?:\.\d{1,3}){3}):(\d{1,5})(/[^\s]*)?$", url)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise RunError("the URL must be ws://127.x.x.x:PORT/PATH (loopback only), not %r" % url)
    port = int(m.group(2))
    wstest, deadline = options["wstest"], options["deadline"]
    reports = os.path.join(out, "servers")
    spec_path = os.path.join(out, "fuzzingclient-spec.json")
    expected = prepare(wstest, reports, spec_path, {
        "outdir": reports, "servers": [{"agent": options["agent"], "url": url}],
        "cases": cases, "exclude-cases": [], "exclude-agent-cases": {}, "options": {"failByDrop": False}})
    if port_open(port):
        raise RunError("127.0.0.1:%d is already in use (set AUTOBAHN_PORT)" % port)
    server_log = os.path.join(out, "server-under-test.log")
    log("starting %s (log: %s)" % (" ".join(cmd), server_log))
    server = start(cmd, server_log)
    try:
        wait_listening(server, port, cmd[0], server_log)
        log("fuzzing %s with %d cases (reports: %s)" % (url, len(expected), reports))
        started = time.time()
        fuzzer = start(wstest.command("wstest", "-m", "fuzzingclient", "-s", spec_path),
                       None, pipe=True, env=wstest.env())
        progress = Progress(fuzzer, os.path.join(out, "fuzzingclient.log"), len(expected))
        progress.start()
        rc = run_until(fuzzer, deadline, "wstest fuzzingclient")
        progress.join()
        log("wstest finished in %.0f s" % (time.time() - started))
        if server.poll() is not None:
            log("the server under test exited during the run (status %d); log: %s%s"
                % (server.returncode, server_log, tail(server_log)))
        elif progress.dropped:
            log(progress.dropped)
    finally:
        stop(server)
    if rc != 0:
        log("wstest exited with status %d; log: %s%s" % (rc, progress.logpath, tail(progress.logpath)))
    return finish(reports, expected, options["require_all"], rc == 0)


def fuzz_client(port, cases, cmd, out, options):
    """wstest's fuzzingserver on 127.0.0.1:port, and cmd run against it."""
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RunError("bad port %r" % port)
    port = int(port)
    wstest, deadline = options["wstest"], options["deadline"]
    reports = os.path.join(out, "clients")
    spec_path = os.path.join(out, "fuzzingserver-spec.json")
    expected = prepare(wstest, reports, spec_path, {
        "outdir": reports, "url": "ws://127.0.0.1:%d" % port,
        "cases": cases, "exclude-cases": [], "exclude-agent-cases": {}, "options": {"failByDrop": False}})
    if port_open(port):
        raise RunError("127.0.0.1:%d is already in use (set AUTOBAHN_PORT)" % port)
    server_log = os.path.join(out, "fuzzingserver.log")
    # -u 0: no embedded web server (it would listen on port 8080).
    server = start(wstest.command("wstest", "-m", "fuzzingserver", "-s", spec_path, "-u", "0"),
                   None, pipe=True, env=wstest.env())
    progress = Progress(server, server_log, len(expected))
    progress.start()
    try:
        wait_listening(server, port, "wstest fuzzingserver", server_log)
        client_log = os.path.join(out, "client-under-test.log")
        log("fuzzing server ready on 127.0.0.1:%d with %d cases; running %s (log: %s)"
            % (port, len(expected), " ".join(cmd), client_log))
        started = time.time()
        client = start(cmd, client_log, env=dict(os.environ, AUTOBAHN_AGENT=options["agent"]))
        rc = run_until(client, deadline, cmd[0])
        log("the client finished in %.0f s with status %d" % (time.time() - started, rc))
        if rc != 0:
            log("client log: %s%s" % (client_log, tail(client_log)))
    finally:
        stop(server)
        progress.join()
    return finish(reports, expected, options["require_all"], rc == 0)


def main(argv):
    usage = "usage: run.py server URL CASES -- CMD... | client PORT CASES -- CMD... | summary DIR"
    out = os.path.abspath(os.environ.get("AUTOBAHN_OUT") or "target/autobahn-reports")
    require_all = os.environ.get("AUTOBAHN_REQUIRE_ALL", "1") != "0"
    if len(argv) == 2 and argv[0] == "summary":
        if not os.path.exists(os.path.join(argv[1], "index.json")):
            raise RunError("no index.json in " + argv[1])
        passed, failed, complete = summarise(argv[1], require_all)
        print("%d passed, %d failed" % (passed, failed))
        return 2 if not complete else 1 if failed else 0
    if len(argv) < 5 or argv[0] not in ("server", "client") or argv[3] != "--":
        raise RunError(usage)
    mode, target, cases, cmd = argv[0], argv[1], [c for c in argv[2].split(",") if c], argv[4:]
    agent = os.environ.get("AUTOBAHN_AGENT", "wsbox")
    if not re.match(r"^[A-Za-z0-9._-]+$", agent):
        raise RunError("AUTOBAHN_AGENT may hold letters, digits, '.', '_' and '-' only")
    timeout = env_int("AUTOBAHN_TIMEOUT", 3600)
    os.makedirs(out, exist_ok=True)
    options = {"wstest": ensure_wstest(), "agent": agent, "require_all": require_all}
    options["deadline"] = time.time() + timeout  # counted from here: a cold install is not a run
    if mode == "server":
        return fuzz_server(target, cases, cmd, out, options)
    return fuzz_client(target, cases, cmd, out, options)


def interrupted(signum, frame):
    raise RunError("interrupted by signal %d" % signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        sys.exit(main(sys.argv[1:]))
    except (RunError, InstallError, KeyboardInterrupt) as e:
        log("error: %s" % (str(e) or "interrupted"))
        if selected:
            print("0 passed, %d failed" % len(selected))
        sys.exit(2)
