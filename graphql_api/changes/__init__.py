"""The change feed: every committed change of a user's objects, at gapless per-user positions."""
