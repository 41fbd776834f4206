"""install.py - finds or installs the Autobahn testsuite for tests/autobahn.sh.

The testsuite's `wstest` (PyPI "autobahntestsuite") runs on Python 2.7 only.
Everything goes into one cache directory, $AUTOBAHN_HOME (default
~/.cache/wsbox/autobahn), and nothing is installed system wide:

    python2.7/root/     Debian bullseye's python2.7, extracted privately (only
                        when this machine has no Python 2.7 of its own)
    pip/                pip 20.3.4 + setuptools + wheel for that Python 2.7
    wstest-VERSION/     autobahntestsuite and its pinned dependencies
                        (pip --target), with the C accelerators wsaccel and
                        ujson when they compile; .installed marks it complete
    install.log         what the last install ran

Python 2.7 is looked for in this order: $AUTOBAHN_PYTHON2 (a path, or
"debian" to force the Debian one), pyenv's 2.7.x, python2.7/python2 on PATH,
the cached Debian one, and last a fresh Debian one: `apt-get download` of
python2.7 and the libraries this machine lacks from bullseye (with a private
apt state directory and this machine's own Debian mirror, so the system's apt
and dpkg state stay untouched), unpacked with `dpkg-deb -x`.

`python3 tests/conformance/install.py` installs (or checks) and prints the
interpreter; run.py imports ensure_wstest().
"""

import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

VERSION = "25.10.1"  # autobahntestsuite
PY2_TOOLS = ["pip==20.3.4", "setuptools<45", "wheel<0.38"]  # the last that run on 2.7
DEBIAN_SUITE = "bullseye"  # the last Debian release with python2.7
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Never unpacked from bullseye: data-only or core packages the host has newer.
DEBIAN_SKIP = re.compile(r"^(mailcap|mime-support|media-types|tzdata|libc6|libc-bin|libgcc-s1|gcc-\d+-base)$")
HERE = os.path.dirname(os.path.abspath(__file__))
HELPER = os.path.join(HERE, "wstest_loopback.py")


class InstallError(Exception):
    pass


def log(message):
    print("autobahn: " + message, file=sys.stderr, flush=True)


def cache_home():
    home = os.environ.get("AUTOBAHN_HOME") or os.path.expanduser("~/.cache/wsbox/autobahn")
    home = os.path.abspath(home)
    if home in ("/", os.path.expanduser("~")):
        raise InstallError("AUTOBAHN_HOME must be a directory of its own, not " + home)
    return home


class Python2:
    """A Python 2.7 interpreter, plus what a privately unpacked one needs."""

    def __init__(self, exe, libpath=(), include=()):
        self.exe, self.libpath, self.include = exe, list(libpath), list(include)

    def env(self, pythonpath=None, **extra):
        """A clean environment: none of the caller's Python or pip settings
        that would redirect a Python 2 interpreter or its pip."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PYTHON") and k not in (
                   "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_REQUIRE_VIRTUALENV")}
        if self.libpath:
            env["LD_LIBRARY_PATH"] = ":".join(self.libpath + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env.update(extra)
        return env

    def works(self):
        """Is this a Python 2.7 with ssl (pip needs https) and zlib?"""
        check = "import sys, ssl, zlib; sys.exit(sys.version_info[:2] != (2, 7))"
        try:
            return subprocess.run([self.exe, "-s", "-c", check], env=self.env(), timeout=60,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


class Wstest:
    """The installed testsuite: command() runs wstest_loopback.py under it."""

    def __init__(self, site, python):
        self.site, self.python = site, python

    def command(self, *args):
        return [self.python.exe, "-s", HELPER] + list(args)

    def env(self):
        return self.python.env(WSTEST_SITE=self.site, PYTHONUNBUFFERED="1")

    def check(self):
        """(returncode, output) of `wstest_loopback.py check`."""
        p = subprocess.run(self.command("check"), env=self.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        return p.returncode, p.stdout.strip()


def downloaded(pattern):
    found = glob.glob(pattern)
    if not found:
        raise InstallError("pip downloaded no %s (only a source archive?)" % os.path.basename(pattern))
    return found[0]


def run_logged(cmd, logfile, what, **kwargs):
    """Run cmd with its output appended to logfile; InstallError (with the
    log's tail) when it fails."""
    with open(logfile, "a") as f:
        f.write("\n$ %s\n" % " ".join(cmd))
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            **kwargs).returncode
    if rc != 0:
        with open(logfile) as f:
            tail = "".join(f.readlines()[-25:])
        raise InstallError("%s failed (exit %d); the end of %s:\n%s" % (what, rc, logfile, tail))


# ---------------------------------------------------------------------------
# Python 2.7
# ---------------------------------------------------------------------------

def find_python2(home, logfile):
    forced = os.environ.get("AUTOBAHN_PYTHON2", "")
    if forced == "debian":
        return debian_python2(home, logfile)
    if forced:
        python = Python2(forced)
        if not python.works():
            raise InstallError("AUTOBAHN_PYTHON2=%s is not a Python 2.7 with ssl and zlib" % forced)
        return python
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(os.path.join(pyenv, "versions", "2.7*", "bin", "python2.7")), reverse=True)
    candidates += [p for p in (shutil.which("python2.7"), shutil.which("python2")) if p]
    candidates += ["/usr/bin/python2.7", "/usr/local/bin/python2.7"]
    for exe in candidates:
        if os.access(exe, os.X_OK) and Python2(exe).works():
            return Python2(exe)
    return debian_python2(home, logfile)


def system_debian_mirror():
    """The first non-security Debian archive URI in this machine's apt sources."""
    uris = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for line in f:
                if line.startswith("URIs:"):
                    uris += line.split()[1:]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.split()[:1] == ["deb"]:
                        uris += [w for w in line.split() if re.match(r"^[a-z]+://", w)]
    for uri in uris:
        if "security" not in uri:
            return uri.rstrip("/")
    return None


def unpacked_python2(root):
    """Debian's python2.7 unpacked under root: its libraries (libpython2.7,
    libssl1.1, ...) and headers are there too."""
    libpath = [d for pattern in ("usr/lib/*-linux-gnu", "lib/*-linux-gnu")
               for d in sorted(glob.glob(os.path.join(root, pattern)))]
    # Debian's pyconfig.h includes <x86_64-linux-gnu/python2.7/pyconfig.h>.
    include = [os.path.join(root, "usr", "include", "python2.7"), os.path.join(root, "usr", "include")]
    return Python2(os.path.join(root, "usr", "bin", "python2.7"), libpath, include)


def debian_python2(home, logfile):
    base = os.path.join(home, "python2.7")
    root = os.path.join(base, "root")
    if os.path.exists(os.path.join(root, "usr", "bin", "python2.7")) and unpacked_python2(root).works():
        return unpacked_python2(root)
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise InstallError("no Python 2.7 here, and no %s to unpack Debian's; set AUTOBAHN_PYTHON2" % tool)
    mirror = os.environ.get("AUTOBAHN_DEBIAN_MIRROR") or system_debian_mirror()
    if not mirror:
        raise InstallError("no Debian mirror in /etc/apt/sources*; set AUTOBAHN_DEBIAN_MIRROR")
    if not os.path.exists(DEBIAN_KEYRING):
        raise InstallError("no %s (package debian-archive-keyring)" % DEBIAN_KEYRING)

    state = os.path.join(base, "apt")
    shutil.rmtree(base, ignore_errors=True)
    for d in ("lists/partial", "cache/archives/partial", "debs", "root.tmp"):
        os.makedirs(os.path.join(base if d.startswith(("debs", "root")) else state, d))
    with open(os.path.join(state, "sources.list"), "w") as f:
        f.write("deb [signed-by=%s] %s %s main\n" % (DEBIAN_KEYRING, mirror, DEBIAN_SUITE))
    # A private apt: its own sources, lists and cache; no locks, since
    # nothing is installed (dpkg's status is only read, to see what is missing).
    apt = ["apt-get", "-q",
           "-o", "Dir::Etc::sourcelist=" + os.path.join(state, "sources.list"),
           "-o", "Dir::Etc::sourceparts=-",
           "-o", "Dir::State::Lists=" + os.path.join(state, "lists"),
           "-o", "Dir::State::extended_states=" + os.path.join(state, "extended_states"),
           "-o", "Dir::Cache=" + os.path.join(state, "cache"),
           "-o", "Debug::NoLocking=1",
           "-o", "APT::Get::List-Cleanup=false",
           "-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
           "-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
           "-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
           "-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"]
    if os.geteuid() == 0:
        apt += ["-o", "APT::Sandbox::User=root"]
    log("fetching Debian %s's python2.7 from %s (private apt state in %s)"
        % (DEBIAN_SUITE, mirror, state))
    run_logged(apt + ["update"], logfile, "apt-get update (Debian %s)" % DEBIAN_SUITE)
    # What apt would install here is what this machine lacks.
    sim = subprocess.run(apt + ["-s", "install", "--no-install-recommends", "python2.7", "libpython2.7-dev"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    packages = [line.split()[1] for line in sim.stdout.splitlines() if line.startswith("Inst ")]
    packages = [p for p in packages if not DEBIAN_SKIP.match(p)
                and (not p.endswith("-dev") or p == "libpython2.7-dev")]
    if sim.returncode != 0 or "python2.7" not in packages:
        raise InstallError("apt could not resolve python2.7 from Debian %s:\n%s" % (DEBIAN_SUITE, sim.stdout[-2000:]))
    log("downloading " + " ".join(packages))
    run_logged(apt + ["download"] + packages, logfile, "apt-get download", cwd=os.path.join(base, "debs"))
    for deb in sorted(glob.glob(os.path.join(base, "debs", "*.deb"))):
        run_logged(["dpkg-deb", "-x", deb, os.path.join(base, "root.tmp")], logfile, "dpkg-deb -x " + deb)
    os.rename(os.path.join(base, "root.tmp"), root)
    shutil.rmtree(os.path.join(base, "debs"))
    shutil.rmtree(state)
    python = unpacked_python2(root)
    if not python.works():
        raise InstallError("the unpacked Debian python2.7 (%s) does not run" % python.exe)
    return python


# ---------------------------------------------------------------------------
# pip for Python 2.7, then the testsuite
# ---------------------------------------------------------------------------

def python2_pip(home, python, logfile):
    """A pip for `python` in home/pip: returns (command, env)."""
    tools = os.path.join(home, "pip")
    cmd, env = [python.exe, "-s", "-m", "pip"], python.env(pythonpath=tools)
    if os.path.isdir(os.path.join(tools, "pip")) and subprocess.run(
            cmd + ["--version"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        return cmd, env
    log("installing %s for Python 2.7 into %s" % (", ".join(PY2_TOOLS), tools))
    # Whatever pip this Python 2.7 has (Debian's has none) is not used: fetch
    # the last pip wheel that runs on 2.7 with this Python 3's pip, and run
    # pip straight from the wheel to install it with setuptools and wheel.
    downloads = os.path.join(home, "downloads")
    run_logged([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "-d", downloads, PY2_TOOLS[0]], logfile, "downloading %s with python3 -m pip" % PY2_TOOLS[0])
    wheel = downloaded(os.path.join(downloads, "pip-*.whl"))
    shutil.rmtree(tools, ignore_errors=True)
    run_logged([python.exe, "-s", os.path.join(wheel, "pip"), "install", "--no-cache-dir",
                "--target", tools] + PY2_TOOLS, logfile, "installing pip for Python 2.7", env=python.env())
    return cmd, env


def requirements_without_accelerate(wheel):
    """The wheel's Requires-Dist, without the "accelerate" extra (wsaccel and
    ujson, which need a C compiler and Python.h)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode("utf-8").splitlines()
    requirements = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = line.split(":", 1)[1].strip()
        if ";" in requirement and "extra" in requirement.split(";", 1)[1]:
            continue
        requirement = re.sub(r"\[([^\]]*)\]", lambda m: "[%s]" % ",".join(
            e.strip() for e in m.group(1).split(",") if e.strip() != "accelerate"), requirement)
        requirements.append(requirement.replace("[]", "").replace("(", "").replace(")", "").replace(" ", ""))
    return requirements


def install_wstest(home, site, logfile):
    python = find_python2(home, logfile)
    log("Python 2.7: " + python.exe)
    pip, pip_env = python2_pip(home, python, logfile)
    downloads = os.path.join(home, "downloads")
    run_logged(pip + ["download", "--no-cache-dir", "--no-deps", "--only-binary=:all:", "-d", downloads,
                      "autobahntestsuite==" + VERSION], logfile, "downloading autobahntestsuite", env=pip_env)
    wheel = downloaded(os.path.join(downloads, "autobahntestsuite-%s-*.whl" % VERSION))
    install = pip + ["install", "--no-cache-dir", "--target", site]
    cflags = " ".join(["-I" + d for d in python.include] + [os.environ.get("CFLAGS", "")]).strip()
    accelerated = False
    if os.environ.get("AUTOBAHN_ACCELERATE", "1") != "0":
        log("installing autobahntestsuite %s and its pinned dependencies (compiling wsaccel)" % VERSION)
        try:
            run_logged(install + [wheel], logfile, "pip install", env=dict(pip_env, CFLAGS=cflags))
            accelerated = True
        except InstallError:
            log("that failed (no C compiler or Python.h?): installing without the accelerators")
    if not accelerated:
        shutil.rmtree(site, ignore_errors=True)
        run_logged(install + requirements_without_accelerate(wheel), logfile, "pip install", env=pip_env)
        run_logged(install + ["--no-deps", wheel], logfile, "pip install", env=pip_env)
    wstest = Wstest(site, python)
    rc, output = wstest.check()
    if rc != 0 or output.split()[:1] != [VERSION]:
        raise InstallError("the installed testsuite does not load:\n" + output[-2000:])
    log("UTF-8 validator: " + output.split()[-1])
    shutil.rmtree(downloads, ignore_errors=True)
    with open(os.path.join(site, ".installed"), "w") as f:
        json.dump({"version": VERSION, "python": python.exe, "libpath": python.libpath,
                   "accelerated": accelerated, "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                  f, indent=1)
    return wstest


def installed(site):
    """The install in `site` if it is complete and still loads, else None."""
    try:
        with open(os.path.join(site, ".installed")) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    wstest = Wstest(site, Python2(marker["python"], libpath=marker["libpath"]))
    return wstest if marker.get("version") == VERSION and wstest.check()[0] == 0 else None


def ensure_wstest():
    """The testsuite, installed first if needed. Raises InstallError."""
    home = cache_home()
    site = os.path.join(home, "wstest-" + VERSION)
    wstest = installed(site)
    if wstest:
        return wstest
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing
        wstest = installed(site)
        if wstest:
            return wstest
        started = time.time()
        log("installing the Autobahn testsuite %s into %s" % (VERSION, home))
        logfile = os.path.join(home, "install.log")
        open(logfile, "w").close()
        shutil.rmtree(site, ignore_errors=True)
        wstest = install_wstest(home, site, logfile)
        log("installed in %.0f s" % (time.time() - started))
        return wstest


if __name__ == "__main__":
    try:
        wstest = ensure_wstest()
    except InstallError as e:
        log("error: %s" % e)
        sys.exit(2)
    print("wstest %s in %s, Python 2.7: %s" % (VERSION, wstest.site, wstest.python.exe))
