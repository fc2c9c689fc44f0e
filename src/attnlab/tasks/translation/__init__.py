"""Translation: an encoder-decoder Transformer trained on parallel text, decoded greedily or
with beam search, scored with sacreBLEU — on the same task-agnostic training loop."""
