"""Fitting NN potentials to reference data: workflows, losses, optimizers, checkpoints, job files.

``base`` (``Workflow``: cells, targets, splits), ``prepare`` and ``workflow`` (``FitWorkflow``: the steps of
``prepare`` and the training loop), ``apply`` (one-shot prediction and relaxation workflows), ``closures``
(losses, metrics, ``SimpleClosure``), ``lbfgs`` and ``bfgs`` (float64 optimizers), ``checkpoint``, ``log``
(the per-epoch fit log), ``jobs`` (YAML/JSON job files), ``parsers`` (RuNNer ``input.nn``), ``recipes``
(default descriptor sets and networks), ``compat`` (0.1.4 parameters that are accepted and ignored). Users reach
these names through ``miniff.ml_util``.
"""
