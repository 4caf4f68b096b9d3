"""Workloads (model + data + metric at named sizes) and the claims they test."""
