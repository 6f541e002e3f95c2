"""Training: the fit loop (``loop``), what the optimiser steps (``optim``), the steps' windows
(``sampling``), and one run from start to finish (``run``: the one writer of a run directory)."""
