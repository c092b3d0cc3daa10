"""Sandboxes: isolated guests, from a base image to a running VM reachable over SSH and back to nothing.

This package is the one place that knows how a guest came to be running (booted today; restored
from a saved state later), so everything above it speaks of sandboxes, not domains.
"""
