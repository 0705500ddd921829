"""Training utilities (data, losses, loop). Imported by scripts/, never by the codec itself."""
