"""Memory sizes as people write them (`6GB`, `1.5 GiB`, `6000M`) ↔ bytes.

Units are binary, as `free -g` and the RAM on a box are counted: K/KB/KiB = 1024, M/MB/MiB = 1024², G/GB/GiB =
1024³, T/TB/TiB = 1024⁴; a bare number is bytes.
"""

from __future__ import annotations

import re

UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class SizeError(ValueError):
    """A memory size that cannot be read; the message says what was given and how to write one."""


def parse_size(text: str | int, what: str = "--max-memory") -> int:
    """Bytes in `text` ("6GB", "6 GiB", "512MB", "1.5G", "1073741824"); `SizeError` naming `what` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise SizeError(f"`{what}` must be positive, not {text}.")
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise SizeError(f"`{what}` is {str(text)!r}, which is not a memory size; write a number and a unit, "
                        f"e.g. 6GB, 1.5GB, 6000MB (units B, KB, MB, GB, TB; binary: 1GB = 1024³ bytes).")
    value = int(float(m[1]) * UNITS[m[2].lower()])
    if value <= 0:
        raise SizeError(f"`{what}` is {text!r}: a budget must be more than 0 bytes.")
    return value


def format_size(n: float) -> str:
    """`n` bytes as a short text: 512 B, 12.3 MB, 6.00 GB (binary units, as parse_size reads them)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GB" else f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def format_flag(n: float) -> str:
    """`n` bytes rounded up to what one types after `--max-memory`: 413MB, 6.3GB."""
    import math

    if n < 10 << 30:
        return f"{math.ceil(n / (1 << 20))}MB"
    return f"{math.ceil(n / (1 << 30) * 10) / 10:.1f}GB"
