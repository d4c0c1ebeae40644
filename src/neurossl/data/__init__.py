"""Data layer: sources, NWB reading, the Session contract and splits."""
