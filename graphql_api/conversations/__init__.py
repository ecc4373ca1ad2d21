"""The conversations domain."""
