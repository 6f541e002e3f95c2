"""The library. At this folder's root, the contracts everything shares: the batch (``batch``),
labels (``labels``), scores (``metrics``), errors (``errors``), guarded JSON files (``files``),
the training config (``train_config``) and a run directory's files (``run_dir``). Below it:
``data`` (readers, datasets, the image-feature cache opened for training), ``text`` (text
sides), ``vision`` (stage one), ``modules`` and ``heads`` (the model's parts), ``models`` (the
config, the registry and zoo, the one tagger), ``runtime`` (devices, processes, precision),
``inference`` (a run rebuilt and tagging), ``training`` (the loop and one run end to end) and
``report`` (the paper's tables)."""
