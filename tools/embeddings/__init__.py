"""Embeddings: the per-image cache, the archive-scale Parquet store and its Ray job, the offline sentence encoder."""
