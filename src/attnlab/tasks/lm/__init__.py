"""Language modelling: a decoder-only Transformer trained on one text, by characters or
byte-level BPE, scored in bits per character (or byte), sampled or greedy — on the same
task-agnostic training loop."""
