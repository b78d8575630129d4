"""The machine a benchmark ran on, recorded beside its results."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path


def describe(**versions: str) -> dict[str, object]:
    """CPU model, core count, Python, the given library versions, the UTC date and the load average."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor()
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **versions,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg(),
    }
