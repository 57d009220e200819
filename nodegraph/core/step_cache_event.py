"""The event a step-cache node sends each step (a plain dataclass: core imports nothing above it).

Hooks count them: `nodegraph run -v` reports how many steps each cache reused (exec/step_cache_report.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepCacheDecision:
    """Node `node_id` (qualified like every event's: `denoise/step/predict`) either ran its model in full
    (`reused` False) or reused cached features (`reused` True) with cache `method` on this step."""

    node_id: str
    method: str
    reused: bool
