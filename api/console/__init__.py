"""The operator's console: server-rendered pages with a little JavaScript, under
``/console``. Pages carry no data; their script calls the same HTTP API as any client,
with the signed-in user's own credential, so the API's permission checks are the
console's (no console-only back door)."""
