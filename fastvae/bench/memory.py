"""Peak memory of this process, for benchmarks."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB.

    Linux's VmHWM (/proc/self/status) starts afresh at exec. getrusage's
    ru_maxrss does not: a worker forked from a parent that held a large
    array reports the parent's peak too, so it is only the fallback where
    there is no /proc.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
