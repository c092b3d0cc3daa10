"""This host's memory as /proc/meminfo reports it (admission, the warm pool's size)."""

from __future__ import annotations


def meminfo_mb(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) // 1024
    return 0


def free_memory_mb() -> int:
    return meminfo_mb("MemAvailable")


def total_memory_mb() -> int:
    return meminfo_mb("MemTotal")
