"""Archive-scale work: ``raddiff embed`` (a whole archive into the Parquet embedding store, on Ray Data)."""
