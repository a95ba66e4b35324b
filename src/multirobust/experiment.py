"""Moved: the recipes' kit is ``multirobust.paper.experiment``."""

raise ImportError("multirobust.experiment moved to multirobust.paper.experiment; use that")
