"""The paper's experiments: the synthetic SVM (``multirobust.paper.svm``) and what the recipes in
``recipes/`` share (``multirobust.paper.experiment``).

Examples:
    >>> from multirobust.paper import experiment, svm
    >>> experiment.paper_settings("mnist").epochs, svm.PLAYERS
    (15, ('linf', 'l2', 'l1'))
"""
