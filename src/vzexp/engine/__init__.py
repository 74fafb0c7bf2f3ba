"""Lightning modules: evaluation (predict loop)."""
