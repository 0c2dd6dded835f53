"""Beat: sends periodic tasks; never runs them (processes layer)."""
