"""A hook that counts step-cache decisions and reports them when the run ends (`nodegraph run -v`)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from nodegraph.core.step_cache_event import StepCacheDecision
from nodegraph.exec.events import RunCancelled, RunFailed, RunFinished


class StepCacheReport:
    """Prints, per cache node, "step cache <node>: <method> reused R of N steps" after the run (nothing when no
    node used a step cache). `counts` keeps {(node_id, method): (reused, total)} for callers and tests."""

    def __init__(self, file=None):
        self._file = file or sys.stderr
        self._reused: Counter = Counter()
        self._total: Counter = Counter()

    @property
    def counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {key: (self._reused[key], total) for key, total in self._total.items()}

    def __call__(self, event: Any) -> None:
        if isinstance(event, StepCacheDecision):
            key = (event.node_id, event.method)
            self._total[key] += 1
            self._reused[key] += event.reused
        elif isinstance(event, (RunFinished, RunFailed, RunCancelled)):
            for (node_id, method), (reused, total) in self.counts.items():
                print(f"step cache {node_id}: {method} reused {reused} of {total} steps "
                      f"({total - reused} full model calls)", file=self._file, flush=True)

