"""pipeline benchmark package."""
