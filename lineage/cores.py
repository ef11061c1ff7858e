"""How many cores this process may use: the ones it may run on, within its CPU quota.

A container is often given a share of a larger machine: a CPU quota (Kubernetes'
CPU limit, ``docker run --cpus``) while its affinity still lists every core of the
host. Extra processes beyond the quota (a decoding child, judging processes) would
only take time from each other, so the quota caps the count: cgroup v2's
``cpu.max``, else cgroup v1's CFS quota, as mounted in the process's own namespace
(``/sys/fs/cgroup``), rounded up.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

__all__ = ["cores", "cpu_quota"]

_CGROUP = Path("/sys/fs/cgroup")


def cpu_quota(root: Path = _CGROUP) -> float | None:
    """The CPUs the cgroup quota under ``root`` allows, or None for no quota."""
    try:
        limit, every = (root / "cpu.max").read_text().split()[:2]
        return None if limit == "max" else int(limit) / int(every)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


@functools.cache
def cores() -> int:
    """The cores this process may use (module docstring); read once, at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(count, 1)
