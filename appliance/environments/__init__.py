"""Environments: where a session runs — network access, variables, setup, image and resources."""
