"""What the benchmarks record about the machine while they run (shared by the benchmark scripts,
which run as ``python benchmarks/<script>.py`` and so find this module beside them)."""

from __future__ import annotations

import pathlib
import time


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all cores' time spent busy over the next ``seconds`` (Linux /proc/stat; else None)."""
    def read():
        fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)
