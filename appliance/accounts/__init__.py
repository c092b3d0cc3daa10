"""Users, teams and API tokens: who is asking, and what they may see."""
