"""`nodegraph serve`: a long-running server with a persistent queue, live progress and partial re-execution.

    app.py        HTTP routes only (FastAPI); one dependency checks the bearer token
    documents.py  what a request may submit: graphs by name, whole documents, the server's path rules
    queue.py      runs, their inputs, status, events and outputs in SQLite under --data
    worker.py     the one thread that runs queued runs in order of priority, then arrival
    events.py     per-run event logs that live clients follow and late clients replay
    cache.py      the memory-bounded node-output cache and the model LRU kept across runs
    main.py       the `nodegraph serve` command

It talks to the core only through its public API: `load_graph`, `bind_input_values`, `Graph.plan`,
`execute_plan`, hooks, the component cache and the output writers.
"""
