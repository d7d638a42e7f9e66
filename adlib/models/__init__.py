"""Model definitions, one module per seed architecture."""
