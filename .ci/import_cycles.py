#!/usr/bin/env python3
"""Fails if any module of a crate imports (`use crate::...` or a
`crate::...` path) a module that imports it back, directly or round a
longer cycle. The crate root (lib.rs, main.rs) is the index every module
may name (the error type, re-exports), so it is left out of the graph; a
`mod.rs` is its folder's module.

Usage: .ci/import_cycles.py CRATE_DIR...
"""
import pathlib
import re
import sys


def module_of(src: pathlib.Path, path: pathlib.Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return "::".join(parts)


def graph(src: pathlib.Path) -> dict:
    files = [p for p in src.rglob("*.rs") if p.name not in ("lib.rs", "main.rs")]
    modules = {module_of(src, p): p for p in files}
    edges = {m: set() for m in modules}
    for module, path in modules.items():
        text = path.read_text()
        # Strip the tests module: tests may use anything.
        text = text.split("#[cfg(test)]")[0]
        # Doc links name modules without importing them.
        text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        names = set(re.findall(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text))
        for group in re.findall(r"use crate::\{([^;]*)\};", text, re.S):
            names |= {n.strip().split("::")[0] for n in group.split(",")}
        for name in names:
            # The longest module path the reference starts with.
            parts = name.split("::")
            for n in range(len(parts), 0, -1):
                target = "::".join(parts[:n])
                if target in modules:
                    if target != module and not module.startswith(target + "::") \
                            and not target.startswith(module + "::"):
                        edges[module].add(target)
                    break
    return edges


def cycle(edges: dict):
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


failed = False
for crate in sys.argv[1:]:
    edges = graph(pathlib.Path(crate) / "src")
    found = cycle(edges)
    if found:
        failed = True
        print(f"{crate}: import cycle: {' -> '.join(found)}")
    else:
        print(f"{crate}: {len(edges)} modules, no import cycle")
sys.exit(1 if failed else 0)
