"""Text sides: how a family of encoders reads posts (``base.TextSide``; ``subword`` for Hugging Face)."""
