"""city benchmark package."""
