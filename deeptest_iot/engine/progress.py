"""Progress of a running campaign: a live line on a terminal, a plain log line now and then otherwise."""

from __future__ import annotations

import time
from typing import Callable


class Progress:
    """Reports progress: a live line on a terminal, a plain log line every ``every`` seconds otherwise."""

    def __init__(self, total: int | None, time_limit: float | None, tty: bool, echo: Callable[[str], None],
                 every: float = 10.0):
        self.total, self.time_limit, self.tty, self.echo, self.every = total, time_limit, tty, echo, every
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, tried: int, coverage: dict, findings: int, final: bool = False) -> None:
        now = time.perf_counter() - self.start
        if not final and not self.tty and now - self.last < self.every:
            return
        self.last = now
        rate = tried / now if now > 0 else 0.0
        cov = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in coverage.items())
        if self.tty:
            done = min(tried / self.total, 1.0) if self.total else min(now / (self.time_limit or 1), 1.0)
            bar = "#" * int(done * 24)
            line = f"\r[{bar:<24}] {tried} inputs  {rate:6.0f}/s  {cov}  findings={findings}"
            self.echo(line + ("\n" if final else ""))
        else:
            self.echo(f"inputs={tried} rate={rate:.0f}/s {cov} findings={findings}\n")
