"""One script of calls a Python user might make on the chapter's server,
run once against Python's server and once against the Rust one (whichever
is registered as "server" on the name server at PYRO_NS_PORT): one line per
case, the value or the exception's type and message, to be compared."""
import Pyro4
from cases import batch_results, report


proxy = Pyro4.Proxy("PYRONAME:server")


def batch(*titles, method="welcomeMessage"):
    calls = Pyro4.batch(proxy)
    for title in titles:
        getattr(calls, method)(title)
    return batch_results(calls)


def oneway():
    with Pyro4.Proxy("PYRONAME:server") as once:
        once._pyroBind()
        once._pyroOneway.add("welcomeMessage")
        sent = once.welcomeMessage("Go")
        # Were a reply sent anyway, this call would read it instead of its own.
        once._pyroOneway.clear()
        return sent, once.welcomeMessage("Rust")


def compressed(title):
    Pyro4.config.COMPRESSION = True
    try:
        with Pyro4.Proxy("PYRONAME:server") as zipped:
            return zipped.welcomeMessage(title)
    finally:
        Pyro4.config.COMPRESSION = False


def marshalled(*args):
    Pyro4.config.SERIALIZER = "marshal"
    try:
        with Pyro4.Proxy("PYRONAME:server") as other:
            return other.welcomeMessage(*args)
    finally:
        Pyro4.config.SERIALIZER = "serpent"


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
    ("a batch", lambda: batch("A", "B", "C")),
    ("a batch that fails half-way", lambda: batch("A", 4, "C")),
    ("a batch of an unknown method", lambda: batch("A", method="buy")),
    ("a oneway call", oneway),
    ("a compressed call", lambda: compressed("Sistem Terdistribusi " * 20)),
    ("marshal", lambda: marshalled("Go")),
    ("marshal, an int", lambda: marshalled(2 ** 70)),
    ("marshal, no argument", lambda: marshalled()),
]
report(cases)
