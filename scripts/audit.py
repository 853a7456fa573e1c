#!/usr/bin/env python3
"""Audit a Cargo.lock against the offline RustSec snapshot with cargo-audit, honouring exactly
one reviewed ignore file (supply-chain/audit-ignore.toml).

Fails (exit 1) on: an advisory not listed; an entry without id, crate, reason or reviewed; an
entry that matches nothing any more. Usage:
  audit.py --db DIR [--lock Cargo.lock] [--ignores FILE]
"""
import argparse
import json
import subprocess
import sys
import tomllib


def load_ignores(path):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return [], []
    except tomllib.TOMLDecodeError as e:
        return [], [f"{path}: not valid TOML: {e}"]
    problems, entries = [], doc.get("ignore", [])
    unknown = set(doc) - {"ignore"}
    if unknown:
        problems.append(f"{path}: unknown key(s) {sorted(unknown)}: only [[ignore]] entries belong here")
    for i, e in enumerate(entries, 1):
        for key in ("id", "crate", "reason", "reviewed"):
            if not str(e.get(key, "")).strip():
                problems.append(f"{path}: entry {i} ({e.get('id', '?')}) has no {key}: every ignore says what, why and when it was reviewed")
    return entries, problems


def advisories(db, lock):
    """Every advisory cargo-audit reports for the lock file, ignoring nothing: (id, crate, kind, title)."""
    cmd = ["cargo", "audit", "--db", db, "--no-fetch", "--stale", "--json", "--file", lock]
    out = subprocess.run(cmd, capture_output=True, text=True)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        sys.exit(f"cargo audit did not answer with JSON (exit {out.returncode}):\n{out.stderr}")
    found = []
    for v in report.get("vulnerabilities", {}).get("list", []):
        a = v["advisory"]
        found.append((a["id"], v["package"]["name"], "vulnerability", a["title"]))
    for kind, items in (report.get("warnings") or {}).items():
        for w in items:
            a = w.get("advisory") or {}
            found.append((a.get("id", f"{kind}:{w['package']['name']}"), w["package"]["name"], kind, a.get("title", kind)))
    return found


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--lock", default="Cargo.lock")
    p.add_argument("--ignores", default="supply-chain/audit-ignore.toml")
    args = p.parse_args()
    entries, problems = load_ignores(args.ignores)
    found = advisories(args.db, args.lock)
    listed = {(e.get("id"), e.get("crate")) for e in entries}
    for id_, crate, kind, title in found:
        if (id_, crate) not in listed:
            problems.append(f"{crate}: {id_} ({kind}): {title} — upgrade it (cargo update -p {crate}), or list it with its reason in {args.ignores}")
    seen = {(id_, crate) for id_, crate, _, _ in found}
    for e in entries:
        if (e.get("id"), e.get("crate")) not in seen:
            problems.append(f"{args.ignores}: {e.get('id')} ({e.get('crate')}) matches nothing in {args.lock} any more: remove the entry")
    accepted = [f for f in found if (f[0], f[1]) in listed]
    for id_, crate, kind, _ in accepted:
        print(f"audit: {crate} {id_} ({kind}) accepted, see {args.ignores}")
    if problems:
        for msg in problems:
            print(f"audit: {msg}", file=sys.stderr)
        return 1
    print(f"audit: {args.lock}: no advisory outside {args.ignores} ({len(found)} found, {len(accepted)} accepted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
