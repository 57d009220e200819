"""The server's run record holds where the memory went: the run's peak and each node's (as `nodegraph run -v`
prints them), kept in the store across restarts; a data folder from before this column gains it."""

import sqlite3

from serve_helpers import DIGITS

from nodegraph.serve.queue import RunStore


def test_a_finished_run_records_its_peak_and_each_nodes(client):
    run = client.submit("stable_diffusion", **DIGITS, prompt="a 7", seed=71)
    run.result()
    memory = client.get(run.id)["memory"]
    assert memory["device"] == "cpu" and memory["peak"] > 100 << 20  # the process's RSS: torch alone is more
    nodes = memory["nodes"]
    assert {"noise", "denoise", "decode"} <= set(nodes), nodes  # a new seed: these run (the loaders may be cached)
    assert nodes["decode"]["type"].startswith("VAEDecode")
    assert all(0 < n["peak"] <= memory["peak"] and 0 <= n["added"] <= n["peak"] for n in nodes.values())


def test_a_run_served_from_the_node_cache_records_only_the_nodes_that_ran(client):
    inputs = {**DIGITS, "prompt": "a 4", "seed": 72}
    client.submit("stable_diffusion", **inputs).result()
    again = client.submit("stable_diffusion", **inputs)  # the same inputs: the whole result comes from the cache
    again.result()
    shown = client.get(again.id)
    assert shown["cached"] > 0 and shown["memory"] is None  # nothing ran, so nothing is claimed
    other_seed = client.submit("stable_diffusion", **{**inputs, "seed": 73})  # the loaders' outputs are cached
    other_seed.result()
    nodes = client.get(other_seed.id)["memory"]["nodes"]
    assert {"noise", "denoise", "decode"} <= set(nodes), nodes
    assert "unet" not in nodes  # loaded by the first run only


def test_a_store_from_before_the_memory_column_gains_it(tmp_path):
    RunStore(tmp_path / "runs.db").close()
    db = sqlite3.connect(tmp_path / "runs.db")
    db.execute("ALTER TABLE runs DROP COLUMN memory")
    db.close()
    store = RunStore(tmp_path / "runs.db")
    columns = {row["name"] for row in store._db.execute("PRAGMA table_info(runs)")}
    store.close()
    assert "memory" in columns
