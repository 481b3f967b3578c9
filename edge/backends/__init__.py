"""edge/backends."""
