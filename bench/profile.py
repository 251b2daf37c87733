"""Summarise a py-spy collapsed-stack profile (`python -m bench --profile` writes
bench/profile-notify.raw): where notify's CPU went, by function, self and inclusive.

    .venv/bin/python -m bench.profile bench/profile-notify.raw [--top 40] [--match services/]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """`send_raw (/x/.venv/lib/python3.11/site-packages/aiosmtplib/smtp.py:12)` -> `aiosmtplib/smtp.py:send_raw`."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    path = re.sub(r"^[^/]+/(?=(kranj|services|shared|bench)/)", "", path)
    return f"{path}:{m.group('func')}"


def summarise(path: Path, top: int, match: str | None, startup: bool = False) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = skipped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        if not startup and any(marker in stack for marker in ("importlib", "create_app (")):
            skipped += n
            continue
        total += n
        frames = [short(f) for f in stack.split(";")[1:]]  # the first frame is the thread
        if not frames:
            continue
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples of CPU ({path.name})"]
    if skipped:
        out.append(f"({skipped} more samples of start-up, imports and building the app, left out: --startup keeps them)")
    out += ["", "self (where the CPU was spent):"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in self_time.most_common(top)]
    out += ["", "inclusive" + (f" (frames matching {match!r})" if match else "") + ":"]
    chosen = [(f, n) for f, n in inclusive.most_common() if match is None or match in f][:top]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in chosen]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default=None, help="only inclusive frames whose name contains this")
    parser.add_argument("--startup", action="store_true", help="keep the samples of start-up too")
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.match, args.startup))


if __name__ == "__main__":
    main()
