"""Sharing trained models: where a model comes from (``source``: a run directory, an exported
folder or a hub id), the folder ``umt export`` writes (``export``) and its model card (``card``)."""
