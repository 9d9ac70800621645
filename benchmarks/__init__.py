"""voharvest's benchmarks: each module runs one, ``python -m benchmarks.<name>``."""
