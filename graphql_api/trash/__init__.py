"""The trash across domains: emptying it (`emptyTrash`, and the operators' purge)."""
