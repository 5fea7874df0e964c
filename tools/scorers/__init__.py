"""Image-text scorer backends (CheXzero, open_clip/BiomedCLIP, the offline mini CXR-CLIP) and the report-text scorer."""
