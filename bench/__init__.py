"""`make bench`: Flowledger's end-to-end throughput and latency beside their baselines."""
