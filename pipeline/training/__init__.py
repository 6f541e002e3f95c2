"""Training: the fit loop (``loop``), what the optimiser steps (``optim``), the steps' windows
(``sampling``), what the loop tells its observers (``observers``: trackers, a sweep's pruner), and
one run from start to finish (``run``: the one writer of a run directory)."""
