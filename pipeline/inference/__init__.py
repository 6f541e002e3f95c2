"""Inference: a finished run rebuilt as a model (``trained``: ``TrainedRun``, what ``umt.load``
returns), tagging datasets (``predictor``), merging windows back into posts (``windows``),
entities and their probabilities (``entities``), and new posts with their images (``posts``)."""
