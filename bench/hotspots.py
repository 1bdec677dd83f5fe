"""Top functions of a py-spy `--format raw` profile (collapsed stacks: `f1;f2;... count`).

    .venv/bin/python bench/hotspots.py PROFILE.txt [--top 15]

Prints two tables: self time (the sampled leaf frame: where the CPU was), and total
time (the frame anywhere on the stack: what to make cheaper) of the project's own
functions (files under `dispatcher/`), each as % of all samples, by function and file,
with the line seen most often.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse(frame: str) -> tuple[str, str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "", ""
    return m["func"], short(m["file"]), m["line"] or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    self_time: Counter[tuple[str, str]] = Counter()
    total_time: Counter[tuple[str, str]] = Counter()
    lines: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    samples = 0
    for raw in args.profile.read_text(errors="replace").splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        skip = ("process ", "thread ")
        frames = [parse(f) for f in stack.split(";") if f and not f.startswith(skip)]
        if not frames:
            continue
        func, file, line = frames[-1]
        self_time[(func, file)] += count
        lines[(func, file)][line] += count
        for key in {(f, fl) for f, fl, _ in frames if fl.startswith("dispatcher/")}:
            total_time[key] += count
    print(f"{samples:,} samples ({args.profile})\n")
    tables = (("self time (leaf frame)", self_time), ("total time, dispatcher/ only", total_time))
    for title, table in tables:
        print(f"| # | {title} | file:line | % |")
        print("|---:|---|---|---:|")
        for rank, ((func, file), count) in enumerate(table.most_common(args.top), 1):
            line = lines[(func, file)].most_common(1)[0][0] if lines.get((func, file)) else ""
            where = f"{file}:{line}" if line else file
            print(f"| {rank} | `{func}` | {where} | {100 * count / max(samples, 1):.1f} |")
        print()


if __name__ == "__main__":
    main()
