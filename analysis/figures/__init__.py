"""The figures: matplotlib Figures drawn on the Agg canvas from fitted results and arrays.

``plots`` draws the frontier, throughput and loss curves and renders a figure to a file;
``law_plots`` the crossover and the loss law with its best size per device; ``ladder_plot`` the
held-out check of a ladder. No figure reads a database or fits anything itself.
"""
