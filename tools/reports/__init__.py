"""Radiology reports: reading and search, the labeler, finding phrasing, open-vocabulary phrases, the IU reports."""
