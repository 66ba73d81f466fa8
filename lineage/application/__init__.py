"""The application layer: the Tracker and what it runs (run handles, the writer and its unit of
work, recovery, retention, heartbeats, the monitor, policies and input validation).

Imports the domain, the codecs and the ports; never an adapter (those are pushed in by
``lineage.bootstrap``).
"""
