#!/usr/bin/env bash
# Code-shape counts (issue 10), on demand: the biggest Rust files and functions outside tests
# (tests/, */tests/, *_tests.rs, and `#[cfg(test)] mod tests` blocks are left out; generated
# code under proto/ too). A function's length runs from its `fn` line to its closing brace.
#
#   bash scripts/code-counts.sh [TOP]        TOP=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - "${1:-5}" <<'PY'
import os, re, sys
top = int(sys.argv[1])
files, fns = [], []
for crate in sorted(os.listdir(".")):
    src = os.path.join(crate, "src")
    if crate in ("tests", "proto", "target") or not os.path.isdir(src):
        continue
    for dirpath, _, names in os.walk(src):
        for n in names:
            p = os.path.join(dirpath, n)
            if not n.endswith(".rs") or n.endswith("_tests.rs") or n == "tests.rs" or "/tests/" in p:
                continue
            lines = open(p, encoding="utf-8").read().split("\n")
            # Cut `#[cfg(test)] mod tests { ... }` (to the end of the file, where it lives).
            for i, l in enumerate(lines):
                if l.startswith("#[cfg(test)]") and i + 1 < len(lines) and lines[i + 1].startswith("mod "):
                    lines = lines[:i]
                    break
            files.append((len(lines), p))
            for i, l in enumerate(lines):
                m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)", l)
                if not m or l.rstrip().endswith(";"):
                    continue
                depth, seen = 0, False
                for j in range(i, len(lines)):
                    depth += lines[j].count("{") - lines[j].count("}")
                    seen = seen or "{" in lines[j]
                    if seen and depth <= 0:
                        fns.append((j - i + 1, f"{p}:{i + 1} {m.group(5)}"))
                        break
files.sort(reverse=True)
fns.sort(reverse=True)
print(f"biggest files (lines, outside tests), of {len(files)}:")
for n, p in files[:top]:
    print(f"  {n:5} {p}")
print(f"biggest functions (lines, outside tests), of {len(fns)}:")
for n, p in fns[:top]:
    print(f"  {n:5} {p}")
print(f"files over 800 lines: {sum(1 for n, _ in files if n > 800)}; functions over 100 lines: {sum(1 for n, _ in fns if n > 100)}")
PY
