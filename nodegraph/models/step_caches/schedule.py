"""The fixed schedules of the attention caches, as plain functions of the call's index and timestep (no torch):
`StepCacheSchedule` in a step graph and the caches themselves decide with the same function, so the decision
written in the graph is the one the cache follows.

`full_call(method, index, interval, t)`: True = call `index` (from 0) at scheduler timestep `t` runs every
module; False = the attention outputs are reused (pab), extrapolated (faster) or forecast (taylorseer).
"""

from __future__ import annotations

SCHEDULED = ("taylorseer", "faster", "pab")
DEFAULT_INTERVAL = {"taylorseer": 5, "faster": 2, "pab": 2}
TAYLORSEER_WARMUP = 3  # diffusers' `disable_cache_before_step`
PAB_RANGE = (100, 800)  # diffusers' `spatial_attention_timestep_skip_range`, bounds excluded
FASTER_RANGE = (-1, 681)  # FasterCache's, bounds excluded


def full_call(method: str, index: int, interval: int, t: float) -> bool:
    """Whether the schedule of `method` runs call `index` in full (interval 0 = the method's default)."""
    n = interval or DEFAULT_INTERVAL.get(method, 1)
    if method == "taylorseer":
        return index < TAYLORSEER_WARMUP or (index - TAYLORSEER_WARMUP - 1) % n == 0
    if method == "pab":
        low, high = PAB_RANGE
        return index == 0 or not low < t < high or index % n == 0
    if method == "faster":
        low, high = FASTER_RANGE
        return not low < t < high or (index > 0 and index % n == 0)
    return True  # none; first_block and mag decide from the data inside the call
