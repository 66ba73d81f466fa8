"""The remote tracker and the server's side of it (DESIGN §8), above the application layer:
``wire`` (the batch format), ``tracker`` (``RemoteTracker``: the tracker's API over a spool),
``shipper`` (queue -> spool -> server), ``apply`` (a batch run through a tracker service on
the server). No infrastructure here: the spool, the httpx transport and FastAPI are adapters,
wired by ``lineage.bootstrap_remote`` and ``lineage.adapters.server``."""
