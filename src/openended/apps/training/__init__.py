"""Fine-tuning on generated, verified data."""
