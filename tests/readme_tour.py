#!/usr/bin/env python3
"""Runs the README's install step and tour literally, so the README cannot
drift from the truth (a `.ci/run` step).

- The install block (the first ```sh block of "## Install the `wsbox`
  command") runs in the checkout, with CARGO_INSTALL_ROOT pointing into a
  temporary directory, whose bin/ then goes first on PATH.
- The tour (between `<!-- tour:begin -->` and `<!-- tour:end -->`) runs in
  one bash, block after block, with HOME set to a temporary directory in
  which `wsbox` is a symlink to this checkout (the tour says
  `export WSBOX="$HOME/wsbox"`). CARGO_HOME and RUSTUP_HOME keep their real
  values, so the toolchain and the crates cache are the usual ones.
- A ```sh block whose last command is `wsbox serve ...` is started in the
  background and waited for until it prints `wsbox listening`; it is
  stopped at the end.
- A ```text block is the expected output of the ```sh block before it:
  every non-empty line must appear, in order, in what that block printed.

Usage: python3 tests/readme_tour.py   (exit 0 when every step did what the
README says; the temporary directory is removed in every case)
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE_START_TIMEOUT = 120  # seconds: the server compiles the component first
STEP_TIMEOUT = 1800  # seconds: a cold `cargo build` of a guest or the install


def fenced_blocks(text):
    """(language, body) of each fenced block, with the list indentation removed."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        blocks.append((lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


def section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def fail(message):
    print(f"readme_tour: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def run_block(script, cwd, env, what):
    print(f"readme_tour: running {what}:\n{script}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        fail(f"{what} exited with {proc.returncode}")
    return proc.stdout


def expect_lines(output, expected, what):
    pos = 0
    for line in [l.strip() for l in expected.splitlines() if l.strip()]:
        found = output.find(line, pos)
        if found < 0:
            fail(f"{what}: expected the line {line!r} (in order), got:\n{output}")
        pos = found + len(line)


def main():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    install = [b for lang, b in fenced_blocks(section(readme, "## Install the `wsbox` command")) if lang == "sh"]
    if not install:
        fail("no ```sh block in the README's install section")
    begin, end = readme.find("<!-- tour:begin -->"), readme.find("<!-- tour:end -->")
    if begin < 0 or end < begin:
        fail("the README has no <!-- tour:begin --> ... <!-- tour:end --> section")
    tour = fenced_blocks(readme[begin:end])
    if not any(lang == "sh" for lang, _ in tour):
        fail("the tour has no ```sh blocks")

    tmp = tempfile.mkdtemp(prefix="wsbox-readme-tour-")
    server = None
    try:
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        os.symlink(ROOT, os.path.join(home, "wsbox"))
        real_home = os.path.expanduser("~")
        env = dict(os.environ)
        env.setdefault("CARGO_HOME", os.path.join(real_home, ".cargo"))
        env.setdefault("RUSTUP_HOME", os.path.join(real_home, ".rustup"))
        env["CARGO_INSTALL_ROOT"] = os.path.join(tmp, "install")
        env["PATH"] = os.path.join(tmp, "install", "bin") + os.pathsep + env["PATH"]
        # The checkout's toolchain file must not leak into the tour's crate:
        # the tour runs outside the checkout, with whatever rustup picks there.
        env.pop("RUSTUP_TOOLCHAIN", None)
        env.pop("CARGO_TARGET_DIR", None)

        # The install step builds into the checkout's own target directory,
        # where .ci/run's release build already is: a third full build in a
        # temporary directory costs minutes and gigabytes of disk.
        run_block(install[0], ROOT, dict(env, CARGO_TARGET_DIR=os.path.join(ROOT, "target")), "the install step")

        env["HOME"] = home
        # One shell state across blocks: each block starts where the last
        # one left off (directory and exported variables).
        state = os.path.join(tmp, "state.sh")
        with open(state, "w") as f:
            f.write(f"cd {home}\n")
        last_output = ""
        for n, (lang, body) in enumerate(tour, 1):
            if lang == "text":
                expect_lines(last_output, body, f"tour block {n - 1}")
                continue
            if lang != "sh":
                continue
            lines = [l for l in body.splitlines() if l.strip()]
            save = f'\n{{ echo "cd $(printf %q "$PWD")"; export -p; }} > {state}\n'
            if lines and lines[-1].lstrip().startswith("wsbox serve"):
                # Everything before the server command, then the server in the background.
                prefix = "\n".join(body.splitlines()[: body.splitlines().index(lines[-1])])
                run_block(f"source {state}\n{prefix}\n{save}", home, env, f"tour block {n} (set-up)")
                log_path = os.path.join(tmp, "serve.log")
                log = open(log_path, "w")
                server = subprocess.Popen(
                    ["bash", "-c", f"source {state}\nexec {lines[-1].strip()}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                deadline = time.monotonic() + SERVE_START_TIMEOUT
                while True:
                    text = open(log_path).read()
                    if "wsbox listening" in text:
                        print(f"readme_tour: server up:\n{text}", file=sys.stderr)
                        break
                    if server.poll() is not None:
                        fail(f"`{lines[-1].strip()}` exited with {server.returncode}:\n{text}")
                    if time.monotonic() > deadline:
                        fail(f"`{lines[-1].strip()}` did not start within {SERVE_START_TIMEOUT} s:\n{text}")
                    time.sleep(0.2)
                last_output = ""
                continue
            last_output = run_block(f"source {state}\n{body}{save}", home, env, f"tour block {n}")
        print("readme_tour: the README's install step and tour ran as written", file=sys.stderr)
        print("1 passed, 0 failed")
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
