"""Data sources: each turns one kind of public or generated data into NWB files."""
