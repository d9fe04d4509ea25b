"""What the pipeline writes besides checkpoints: warehouse tables, atomic writes, charts, and the store that places them."""
