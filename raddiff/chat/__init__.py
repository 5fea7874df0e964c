"""``raddiff chat``: the local web app to explore two cohorts in a conversation with the agent."""
