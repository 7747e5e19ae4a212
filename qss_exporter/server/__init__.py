"""The HTTP listeners' transport side: admission (deadlines, size limits, connection cap), TLS and
authentication of the metrics listener, and a uvicorn server that stops within a budget."""
