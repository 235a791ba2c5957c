"""The chat feature, ``POST /v1/chat/completions``: wire types (``protocol``), the answer
in preparation (``prepared``), the answering service (``service``), the SSE relay
(``streaming``), the grounded prompt (``prompt``), the FastAPI route (``router``) and the
fast front door that serves that route without FastAPI's layers (``front_door``)."""
