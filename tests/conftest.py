"""Shared test settings.

Two cores are all a developer or CI machine has: torch's intra-op threads are capped so that the test
process never oversubscribes them (oversubscription makes torch 8-10x slower on these machines).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
