"""Tasks: what is specific to one use of attention (its data, loss, metrics, run folder and
reports), put together from models, text, io and the task-agnostic training loop."""
