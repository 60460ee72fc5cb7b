"""The glass box: what happens inside a model and a training run, shown offline.

The report of a run: :mod:`npgpt.glassbox.report` (``npgpt report DIR``).
"""
