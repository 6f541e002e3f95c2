"""``umt sweep``: what is searched (``space``), the Optuna study and its workers (``study``), and
what a finished sweep shows (``results``)."""
