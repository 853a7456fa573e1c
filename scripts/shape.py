#!/usr/bin/env python3
"""The shape of the agent's command layer, measured from the source (ARCHITECTURE.md, "Kept
that way"). Prints the figures issue 22 asked to track; `--json` for a machine-readable copy.

    python3 scripts/shape.py

Heuristic, by reading text: a function is `fn name(...) {` up to its matching brace; an import
is `crate::MODULE` (or `super::`) written anywhere in a file, so a path used inline counts too.
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rust_files(crate):
    return sorted(p for p in (ROOT / crate / "src").rglob("*.rs"))


def strip_tests(text):
    """The text before `#[cfg(test)]` (unit tests sit at the end of a file here)."""
    i = text.find("#[cfg(test)]")
    return text if i < 0 else text[:i]


def functions(path):
    """(name, first line, length in lines) of every fn outside the tests module."""
    lines = strip_tests(path.read_text()).splitlines()
    out = []
    fn_re = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?fn\s+(\w+)")
    i = 0
    while i < len(lines):
        m = fn_re.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            code = re.sub(r'"([^"\\]|\\.)*"', '""', lines[j].split("//")[0])
            if not started and code.rstrip().endswith(";") and "{" not in code:
                break  # a declaration without a body
            depth += code.count("{") - code.count("}")
            started = started or "{" in code
            if started and depth <= 0:
                break
            j += 1
        if started:
            out.append((m.group(5), i + 1, j - i + 1))
        i += 1
    return out


def module_of(crate, path):
    rel = path.relative_to(ROOT / crate / "src").with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["main"], ["lib"]):
        return "crate"
    return "::".join(parts)


def imports(crate):
    """module -> set of crate modules it names (first path segment after `crate::`)."""
    mods = {module_of(crate, p): p for p in rust_files(crate)}
    top = {m.split("::")[0] for m in mods}
    edges = {}
    for m, p in mods.items():
        text = "\n".join(
            l for l in strip_tests(p.read_text()).splitlines() if not l.strip().startswith("//")
        )
        found = set()
        for seg in re.findall(r"crate::(\w+)(?:::(\w+))?", text):
            first, second = seg
            if first in top:
                # crate::cmd::check is module cmd::check when that file exists
                sub = f"{first}::{second}" if second and f"{first}::{second}" in mods else first
                found.add(sub)
        found.discard(m)
        edges[m] = found
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def count(pattern, crate="agent"):
    hits = []
    for p in rust_files(crate):
        for no, line in enumerate(strip_tests(p.read_text()).splitlines(), 1):
            if line.strip().startswith("//"):
                continue
            if re.search(pattern, line):
                hits.append(f"{p.relative_to(ROOT)}:{no}")
    return hits


def main():
    agent = ROOT / "agent" / "src"
    cmd_files = sorted((agent / "cmd").glob("*.rs"))
    cmd_lines = {p.name: len(p.read_text().splitlines()) for p in cmd_files}
    fns = []
    for p in rust_files("agent"):
        for name, line, length in functions(p):
            fns.append((length, f"{p.relative_to(ROOT)}:{line} {name}"))
    fns.sort(reverse=True)
    agent_edges = imports("agent")
    cmd_to_cmd = sorted(
        f"{m} -> {t}"
        for m, ts in agent_edges.items()
        if m.startswith("cmd::")
        for t in ts
        if t.startswith("cmd::")
    )
    circles = {c: cycles(imports(c)) for c in ["agent", "installer", "central", "core", "pki"]}
    unit_tests = sum(
        len(re.findall(r"#\[(tokio::)?test\]", p.read_text())) for p in rust_files("agent")
    )
    figures = {
        "agent lines": sum(len(p.read_text().splitlines()) for p in rust_files("agent")),
        "command file lines": cmd_lines,
        "longest functions": [f"{n:4} {where}" for n, where in fns[:10]],
        "functions over 120 lines": sum(1 for n, _ in fns if n > 120),
        "imports between command modules": cmd_to_cmd,
        "places that parse a duration": count(r"DurationSetting::\w+\s*\.parse|duration::parse\("),
        "places that write the token order": count(r"\"CMM_GRAFANA_TOKEN\"|CREDENTIALS_DIRECTORY"),
        "places that dispatch on the topology": count(
            r"match [^{]*(topology|registration\(\))\b|== Topology::|!= Topology::"
            r"|\.central_reads_cluster\(\)|shared_datasource_uid\(\)"
        ),
        "import circles": circles,
        "unit tests in the agent": unit_tests,
    }
    if "--json" in sys.argv:
        print(json.dumps(figures, indent=2))
        return
    for k, v in figures.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk}: {vv}")
        elif isinstance(v, list):
            print(f"{k}: {len(v)}")
            for x in v:
                print(f"  {x}")
        else:
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
