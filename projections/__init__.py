"""Read models built from the notification log (installed as ``lineage.projections``)."""
