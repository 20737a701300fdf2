"""Evaluation: the competition metric and its variants (pure array functions), outputs, atomic files, and
the orchestration that runs methods against the bank (`eval.harness`)."""
