"""`reuse_freed_heap`: after it, a freed large tensor's memory is reused instead of page-faulted in afresh.

Each case runs in a fresh interpreter: the setting is process-wide and must not leak into the test process.
"""

import json
import subprocess
import sys

PROBE = r"""
import json, resource, sys
import torch
from nodegraph.exec.heap import reuse_freed_heap

applied = reuse_freed_heap() if sys.argv[1] == "reuse" else None
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(64 << 18)  # 64 MiB: above glibc's largest automatic mmap threshold (32 MiB)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del t
print(json.dumps({"applied": applied, "faults": faults}))
"""

PAGES = (64 << 20) // 4096


def probe(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_it_every_large_tensor_faults_its_pages_in_again():
    # the baseline the setting exists to change; if glibc ever stops doing this, the setting is moot
    report = probe("default")
    assert min(report["faults"][1:]) > PAGES // 2, report


def test_with_it_a_freed_tensor_is_reused_without_new_page_faults():
    report = probe("reuse")
    assert report["applied"] is True
    assert report["faults"][0] > PAGES // 2  # the first one still has to come from the kernel
    # the heap settles after a round or two (a small allocation can take the spot first), then reuses
    assert max(report["faults"][-4:]) < PAGES // 20, report


def test_it_is_applied_once_and_reports_so():
    code = "from nodegraph.exec.heap import reuse_freed_heap as r; print(r(), r())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "True"], result.stderr
