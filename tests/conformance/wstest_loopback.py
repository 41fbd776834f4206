# wstest_loopback.py - the Python 2.7 side of tests/autobahn.sh.
#
# Runs inside the private Autobahn testsuite install (see install.py), never
# on its own:
#
#   python2.7 -s wstest_loopback.py check            print the testsuite's version
#                                                   and whether wsaccel is in use
#   python2.7 -s wstest_loopback.py cases SPEC.json  print the case ids SPEC selects
#   python2.7 -s wstest_loopback.py wstest ARGS...   run wstest ARGS...
#
# $WSTEST_SITE is the pip --target directory the testsuite is installed in;
# it goes first on sys.path as a site directory (its .pth files make the
# zope namespace package importable).
#
# wstest binds its listening sockets to every interface; here they are bound
# to 127.0.0.1, and a connection to anything but a loopback address ends the
# process, so a run can only ever talk to this machine.
import json
import os
import site
import sys

LISTEN_ON = "127.0.0.1"


def add_site(path):
    before = list(sys.path)
    site.addsitedir(path)
    sys.path[:] = [p for p in sys.path if p not in before] + before


def check():
    import autobahntestsuite
    import autobahntestsuite.fuzzing  # noqa: F401 (the modules a run needs)
    from autobahn.websocket.utf8validator import Utf8Validator
    print("%s %s" % (autobahntestsuite.version, Utf8Validator.__module__))


def is_loopback(host):
    host = host.strip("[]").lower()
    if host.startswith("::ffff:"):
        host = host[len("::ffff:"):]
    if host == "::1":
        return True
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts) and parts[0] == "127"


def list_cases(spec_path):
    """Print the ids the spec's cases/exclude-cases select, one a line;
    exit 2 if an exact id is unknown or the selection is empty."""
    from autobahntestsuite.case import (Cases, CaseCategories, CaseSubCategories,
                                        CaseSetname, CaseBasename)
    from autobahntestsuite.caseset import CaseSet
    with open(spec_path) as f:
        spec = json.load(f)
    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    for pattern in spec.get("cases", []) + spec.get("exclude-cases", []):
        if "*" not in pattern and pattern not in case_set.CasesIndices:
            sys.stderr.write("unknown Autobahn case id %r\n" % pattern)
            sys.exit(2)
    ids = case_set.parseSpecCases(spec)
    if not ids:
        sys.stderr.write("the case selection is empty\n")
        sys.exit(2)
    for case_id in ids:
        print(case_id)


def run_wstest(args):
    from autobahntestsuite import wstest  # first: it picks and installs the reactor
    from twisted.internet import reactor

    def bind_loopback(listen, interface_position):
        def listen_on_loopback(*args, **kwargs):
            args = list(args)
            if len(args) > interface_position:
                if args[interface_position] in ("", None, "0.0.0.0", "::"):
                    args[interface_position] = LISTEN_ON
            elif kwargs.get("interface") in ("", None, "0.0.0.0", "::"):
                kwargs["interface"] = LISTEN_ON
            return listen(*args, **kwargs)
        return listen_on_loopback

    def loopback_only(connect):
        def connect_to_loopback(host, *args, **kwargs):
            if not is_loopback(host):
                sys.stderr.write("wstest_loopback: refusing to connect to %r "
                                 "(only 127.x.x.x and ::1 literals are allowed)\n" % host)
                sys.stderr.flush()
                os._exit(2)
            return connect(host, *args, **kwargs)
        return connect_to_loopback

    # listenTCP(port, factory, backlog, interface); listenSSL(port, factory, ctx, backlog, interface)
    reactor.listenTCP = bind_loopback(reactor.listenTCP, 3)
    reactor.listenSSL = bind_loopback(reactor.listenSSL, 4)
    reactor.connectTCP = loopback_only(reactor.connectTCP)
    reactor.connectSSL = loopback_only(reactor.connectSSL)
    sys.argv = ["wstest"] + args
    wstest.run()


def main():
    add_site(os.environ["WSTEST_SITE"])
    if len(sys.argv) == 2 and sys.argv[1] == "check":
        check()
    elif len(sys.argv) == 3 and sys.argv[1] == "cases":
        list_cases(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "wstest":
        run_wstest(sys.argv[2:])
    else:
        sys.stderr.write("usage: wstest_loopback.py check | cases SPEC.json | wstest ARGS...\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
