"""How many CPU cores this process may run on."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores of this process's CPU affinity, not of the host: in a container or a cgroup,
    os.cpu_count() reports the machine's cores, and thread pools sized by it oversubscribe the few
    the process is given."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
