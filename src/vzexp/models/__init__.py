"""Model adapters over transformers' LLaVA classes, and how models are built or loaded."""
