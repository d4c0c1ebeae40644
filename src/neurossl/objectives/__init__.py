"""Self-supervised objectives: masking schemes and losses."""
