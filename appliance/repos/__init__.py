"""Repositories the appliance can reach with a host-held credential, and their forges."""
