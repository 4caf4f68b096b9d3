"""Offline data: corpora shipped inside registry packages, prepared into local files."""
