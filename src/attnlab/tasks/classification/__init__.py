"""Text classification: train from scratch or fine-tune a pretrained encoder, evaluate,
predict, and the controlled experiments (heads, positions) with their reports."""
