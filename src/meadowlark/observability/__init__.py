"""What operators watch: sampled gauges, lifecycle log lines, the metrics listener."""
