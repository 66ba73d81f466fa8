"""OpenLineage export: run events for data catalogs (Marquez and any OpenLineage consumer)."""
