"""`make bench`: the benchmark of Kranj ZA vse (see bench/run.py and the README's "Benchmark")."""
