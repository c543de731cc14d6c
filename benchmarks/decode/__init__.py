"""CPU decode benchmark: citysight's reader against FFmpeg's own decode of the same clip."""
