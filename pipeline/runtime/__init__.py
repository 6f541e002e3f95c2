"""Where and how tensors are computed: devices, torchrun processes, autocast precision, and the
environment a run records."""
