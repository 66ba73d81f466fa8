"""The lineage server (DESIGN §8): ``lineage serve``, a FastAPI application under uvicorn.

``core`` composes the store, the read models, the tokens and one session (a tracker service for
a tenant and actor) per token owner; ``app`` holds the routes; ``limits`` the body size and
rate limits. Needs the ``server`` extra (FastAPI, uvicorn).
"""
