"""One script of calls a Python user might make on a name server, run once
against Python's `python -m Pyro4.naming` and once against `rpc_naming
serve`: the name server is found as the chapter's programs find it,
`Pyro4.locateNS()` with no host (the local try fails: PYRO_NS_PORT names a
closed port; then a broadcast on PYRO_NS_BCPORT to PYRO_BROADCAST_ADDRS).
One line per case, the value or the exception's type and message, with the
name server's own port written PORT, to be compared."""
import Pyro4
from Pyro4 import nsc
from cases import report

ns = Pyro4.locateNS()
PORT = str(ns._pyroUri.port)


def shown(value):
    if isinstance(value, dict):
        return sorted((k, shown(v)) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(x, str) for x in value):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if isinstance(value, tuple):
        return tuple(shown(v) for v in value)
    if isinstance(value, Pyro4.core.URI):
        return "URI " + str(value)
    return value


def without_setup(text):
    # Python's name server answers broadcasts only when it listens on every
    # interface, and then registers itself at 0.0.0.0; the Rust one, on
    # loopback here, at 127.0.0.1.
    return text.replace(PORT, "PORT").replace("@0.0.0.0:", "@127.0.0.1:")


def with_sorted_metadata(result):
    return {name: (uri, sorted(meta)) for name, (uri, meta) in result.items()}


def nsc_says(*args):
    import contextlib, io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        nsc.main(["-n", ns._pyroUri.host, "-p", PORT] + list(args))
    # A set prints in no fixed order: one tag per case keeps it stable.
    return out.getvalue()


def marshalled_count():
    Pyro4.config.SERIALIZER = "marshal"
    try:
        with Pyro4.Proxy(ns._pyroUri) as other:
            return other.count(), other.list(prefix="shop", return_metadata=True)
    finally:
        Pyro4.config.SERIALIZER = "serpent"


BOOKS = "PYRO:obj_books@localhost:4000"
cases = [
    ("found by broadcast", lambda: (ns._pyroUri.object, ns._pyroUri.host)),
    ("count", lambda: ns.count()),
    ("list", lambda: ns.list()),
    ("lookup itself", lambda: ns.lookup("Pyro.NameServer")),
    ("its metadata", lambda: ns.lookup("Pyro.NameServer", return_metadata=True)),
    ("by its class", lambda: ns.list(metadata_all={"class:Pyro4.naming.NameServer"})),
    ("register with metadata", lambda: ns.register("shop.books", BOOKS, metadata={"kind:books", "city:malang"})),
    ("metadata back", lambda: sorted(ns.lookup("shop.books", return_metadata=True)[1])),
    ("metadata as a str", lambda: ns.register("shop.x", BOOKS, metadata="kind:books")),
    ("metadata not iterable", lambda: ns.register("shop.x", BOOKS, metadata=5)),
    ("an invalid uri", lambda: ns.register("shop.x", "not a uri")),
    ("a uri of another type", lambda: ns.register("shop.x", 5)),
    ("register plain", lambda: ns.register("shop.pens", "PYRO:obj_pens@localhost:4001")),
    ("all of", lambda: ns.list(metadata_all=["kind:books", "city:malang"])),
    ("all of, one missing", lambda: ns.list(metadata_all=["kind:books", "city:surabaya"])),
    ("any of", lambda: with_sorted_metadata(ns.list(metadata_any={"city:malang", "nope"}, return_metadata=True))),
    ("an empty filter", lambda: ns.list(metadata_all=[])),
    ("two filters", lambda: ns.list(prefix="shop", metadata_any=["x"])),
    ("set metadata", lambda: ns.set_metadata("shop.books", ["kind:novel"])),
    ("after set", lambda: ns.lookup("shop.books", return_metadata=True)),
    ("set on an unknown name", lambda: ns.set_metadata("shop.none", ["x"])),
    ("clear metadata", lambda: ns.set_metadata("shop.pens", None)),
    ("list with metadata", lambda: with_sorted_metadata(ns.list(prefix="shop", return_metadata=True))),
    ("nsc listmeta_all", lambda: nsc_says("listmeta_all", "kind:novel")),
    ("nsc listmeta_any", lambda: nsc_says("listmeta_any", "kind:novel", "kind:pens")),
    ("nsc setmeta", lambda: nsc_says("setmeta", "shop.pens", "kind:pens")),
    ("nsc lookup", lambda: nsc_says("lookup", "shop.pens")),
    ("nsc list", lambda: nsc_says("list")),
    ("marshal", lambda: marshalled_count()),
    ("remove itself", lambda: ns.remove("Pyro.NameServer")),
    ("remove by prefix", lambda: ns.remove(prefix="Pyro")),
    ("remove by regex", lambda: ns.remove(regex=".*")),
    ("count at the end", lambda: ns.count()),
]
report(cases, show=lambda value: repr(shown(value)), clean=without_setup)
