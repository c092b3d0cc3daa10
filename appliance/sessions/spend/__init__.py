"""Spend: what the model API usage the egress proxy meters (netpolicy/usage.py) costs, per session,
user and team and month, and the monthly budgets that stop new turns at their limit."""
