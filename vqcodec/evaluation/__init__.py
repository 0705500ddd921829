"""Evaluation helpers: classical codecs at matched bitrates. Used by scripts/evaluate.py."""
