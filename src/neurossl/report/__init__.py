"""Report layer: dataset summaries, benchmark tables and figures."""
