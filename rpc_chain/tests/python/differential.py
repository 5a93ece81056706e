"""One script of calls a Python user might make on the chapter's ring,
run once against a ring of Python servers and once against a ring of Rust
ones (whichever is registered as example.chainTopology.1 on the name
server at PYRO_NS_PORT): one line per case, the value or the exception's
type and message, to be compared."""
import Pyro4
from cases import batch_results, report


first = Pyro4.Proxy("PYRONAME:example.chainTopology.1")


def batch():
    calls = Pyro4.batch(first)
    calls.process(["hello"])
    calls.process(4)
    return batch_results(calls)


def marshalled():
    Pyro4.config.SERIALIZER = "marshal"
    try:
        with Pyro4.Proxy("PYRONAME:example.chainTopology.1") as other:
            return other.process(["hello"])
    finally:
        Pyro4.config.SERIALIZER = "serpent"


cases = [
    ("the chapter's call", lambda: first.process(["hello"])),
    ("by keyword", lambda: first.process(message=["hello"])),
    ("its own name first", lambda: first.process(["1"])),
    ("a str holding its name", lambda: first.process("x1y")),
    ("a str", lambda: first.process("hello")),
    ("a tuple", lambda: first.process(("hello",))),
    ("a dict with its name", lambda: first.process({"1": 0})),
    ("a dict", lambda: first.process({"a": 0})),
    ("an int", lambda: first.process(4)),
    ("None", lambda: first.process(None)),
    ("no argument", lambda: first.process()),
    ("two arguments", lambda: first.process(["a"], ["b"])),
    ("an unknown keyword", lambda: first.process(["a"], foo=1)),
    ("what the proxy sees", lambda: (sorted(first._pyroMethods), sorted(first._pyroOneway),
                                     sorted(first._pyroAttrs))),
    ("a batch", batch),
    ("marshal", marshalled),
]
report(cases)
