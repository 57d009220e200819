"""`nodegraph serve`: a long-running server with a persistent queue, live progress and partial re-execution.

    app.py        HTTP routes only (FastAPI); one dependency checks the bearer token
    documents.py  what a request may submit: graphs by name, whole documents, the server's path rules
    queue.py      runs, their inputs, status, events and outputs in SQLite under --data
    queue_routes.py  the queue view (positions, priority) and the history (paged, searched, deleted)
    model_list.py the models the server may load, with their family; what a graph's model inputs accept
    graph_list.py GET /graphs' descriptions, graphs kept loaded while their files are unchanged
    worker.py     the one thread that runs queued runs in order of priority, then arrival
    events.py     per-run event logs that live clients follow and late clients replay
    lookups.py    submissions checked on a pool of their own, so a slow lookup never holds a request handler
    run_limits.py per-run limits (pixels, pixels × steps, batch, wall time) checked before a run is queued
    redact.py     messages without the server's own paths or object addresses
    main.py       the `nodegraph serve` command

It talks to the core only through its public API: `load_graph`, `bind_input_values`, `Graph.plan`,
`execute_plan` through `nodegraph.runner`, hooks, and the model / node-output caches of exec/lru_caches.py.
"""
