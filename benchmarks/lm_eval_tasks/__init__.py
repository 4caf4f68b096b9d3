"""Our offline lm-eval tasks (the YAML files here, loaded with `--include_path`) and the code that writes their data."""
