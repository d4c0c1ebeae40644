"""Neural population model backbones."""
