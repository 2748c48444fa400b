"""Model catalogue and datasets: the built-in demo model, uploads and their validation."""
