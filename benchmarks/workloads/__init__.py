"""Registered workloads; every module here is imported by `claimbench.registry.discover`."""
