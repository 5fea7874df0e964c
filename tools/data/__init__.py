"""Data in: loaders (folders, RadDiff CSV and JSONL, MIMIC-CXR layout), image reading, image grids, SQLite stores."""
