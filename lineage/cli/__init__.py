"""The command line (``lineage``): thin commands over the Tracker and the composition root."""
