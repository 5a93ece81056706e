"""One script of calls a Python user might make on the chapter's server,
run once against Python's server and once against the Rust one (whichever
is registered as "server" on the name server at PYRO_NS_PORT): one line per
case, the value or the exception's type and message, to be compared."""
import Pyro4


def outcome(case):
    try:
        return repr(case())
    except Exception as exc:  # the comparison is the point
        return "%s.%s: %s" % (type(exc).__module__, type(exc).__name__, exc)


proxy = Pyro4.Proxy("PYRONAME:server")
cases = [
    ("a title", lambda: proxy.welcomeMessage("Programming GO")),
    ("a title by keyword", lambda: proxy.welcomeMessage(name="Go")),
    ("an int", lambda: proxy.welcomeMessage(4)),
    ("None", lambda: proxy.welcomeMessage(None)),
    ("a list", lambda: proxy.welcomeMessage(["Go"])),
    ("a float", lambda: proxy.welcomeMessage(1.5)),
    ("no argument", lambda: proxy.welcomeMessage()),
    ("two arguments", lambda: proxy.welcomeMessage("a", "b")),
    ("an unknown keyword", lambda: proxy.welcomeMessage(title="Go")),
    ("twice the same", lambda: proxy.welcomeMessage("a", name="b")),
    ("an unknown method", lambda: proxy.buy("Go")),
    ("what the proxy sees", lambda: (sorted(proxy._pyroMethods), sorted(proxy._pyroOneway),
                                     sorted(proxy._pyroAttrs))),
]
for name, case in cases:
    print("%s -> %s" % (name, outcome(case)))
