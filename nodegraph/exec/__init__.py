"""Executor: planning, running, repeat, events and hooks.

Import `run_graph` from `nodegraph` (or `nodegraph.exec.executor`); this package init stays light because
`nodegraph.core` imports the cancel token from here.
"""
