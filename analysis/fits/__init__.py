"""The fits: pure functions, arrays in and frozen results out, no I/O, printing or plotting.

``core`` fits throughput T(N) = c N^-k and solves the Chinchilla crossover; ``loss_law`` fits
L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla Approach 3) and finds the loss-optimal size;
``data_constrained`` is the repeated-data form of Muennighoff et al. and the choice between the
two laws; ``holdout`` checks a law's predictions on sizes it never saw. Soft problems come back
in the results; inputs no fit can use raise ``errors.FitError``.
"""
