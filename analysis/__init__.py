"""Analysis of a study: load, fit (throughput, crossover, loss law), plot and report."""
