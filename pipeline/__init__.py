"""The library: data, text sides, stage one's vision code, models, trainer, run directories."""
