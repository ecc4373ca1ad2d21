"""The tags domain."""
