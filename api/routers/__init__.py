"""HTTP routers; each stays thin: get the service, call it, return a typed model."""
