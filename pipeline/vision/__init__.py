"""Stage one's library: image decoding, the frozen ResNet-152, and decode -> forward -> write."""
