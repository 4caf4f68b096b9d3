"""Model definitions that no library provides in the form the workloads need."""
