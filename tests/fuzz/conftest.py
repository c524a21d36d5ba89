"""The fuzz tests' closing line: how many generated cases ran, and in how long."""

from __future__ import annotations

from fuzzing import RUN


def pytest_terminal_summary(terminalreporter):
    if RUN["cases"]:
        terminalreporter.write_line(f"fuzz: {RUN['cases']} generated cases ran in {RUN['seconds']:.1f} s "
                                    "(time inside the cases; hypothesis' own work not counted)")
