"""`atlas cascade serve`: the online cascade behind an OpenAI-compatible `/v1/chat/completions`.

The cheap levels answer what they can; the rest goes to an upstream OpenAI-compatible model,
whose answers teach the levels online. ``cascade_adapter`` is the only module that touches the
cascade's internals."""
