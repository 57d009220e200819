"""The web page of `nodegraph serve`: plain HTML, CSS and JavaScript modules (no build step) in static/,
talking to the server only through its public HTTP API (docs/server.md)."""
