"""Moved: the SVM experiment is ``multirobust.paper.svm``."""

raise ImportError("multirobust.svm moved to multirobust.paper.svm; import it from there")
