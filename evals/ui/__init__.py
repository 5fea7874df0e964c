"""Exploration and inspection views: the chat app (``raddiff chat``) and run traces (``raddiff trace``)."""
