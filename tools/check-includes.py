#!/usr/bin/env python3
"""tools/check-includes.py [DIR] — the agent's include rules, checked.

A module is a pair NAME.c / NAME.h; a types header NAME-t.h holds only types
and constants (HAProxy's convention). The rules:

  1. a -t.h header includes only other -t.h headers and system headers;
  2. no cycle between modules: module A uses module B when A.c or A.h
     includes B.h (including B-t.h is using B's types, which never leads
     back to a module's functions, so it is not an edge);
  3. no cycle between -t.h headers.

Prints each broken rule and exits 1; prints a one-line summary and exits 0
otherwise."""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def includes(path):
    with open(path, encoding="utf-8") as f:
        return INCLUDE.findall(f.read())


def cycles(graph):
    """The groups of nodes of graph (dict node -> set of nodes) that reach
    each other: Tarjan's strongly connected components of two or more."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def visit(n):
        index[n] = low[n] = len(index)
        stack.append(n)
        on.add(n)
        for m in sorted(graph.get(n, ())):
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in on:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            group = []
            while True:
                m = stack.pop()
                on.discard(m)
                group.append(m)
                if m == n:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for n in sorted(graph):
        if n not in index:
            visit(n)
    return out


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else "spoa"
    files = sorted(f for f in os.listdir(top) if f.endswith((".c", ".h")))
    errors = []
    modules, types = {}, {}
    for f in files:
        incs = includes(os.path.join(top, f))
        if f.endswith("-t.h"):
            for i in incs:
                if not i.endswith("-t.h"):
                    errors.append(f"{top}/{f}: a types header includes {i}, which is not a types header")
            types[f] = {i for i in incs if i.endswith("-t.h") and i != f}
            continue
        mod = f[:-2]
        deps = modules.setdefault(mod, set())
        for i in incs:
            if i.endswith(".h") and not i.endswith("-t.h") and i[:-2] != mod:
                deps.add(i[:-2])
    for name, graph in (("modules", modules), ("types headers", types)):
        for group in cycles(graph):
            errors.append(f"{top}: include cycle between {name}: " + ", ".join(group))
    for e in errors:
        print(e)
    if errors:
        return 1
    edges = sum(len(v) for v in modules.values())
    print(f"check-includes: {len(modules)} modules, {edges} uses, {len(types)} types headers, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
