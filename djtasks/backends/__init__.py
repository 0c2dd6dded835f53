"""Result backends: where task states and outcomes are stored (storage layer)."""
