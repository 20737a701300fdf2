"""One method per family of shared blocks, for checks where running every method adds little and costs minutes.

The template, the reference, bilevel/HVP, primal-dual, teacher, saliency masks, gradient scaling,
re-initialised layers, paired retain/forget steps, sequential requests. `UNLEARN_ALL=1` (or the older
`UNLEARN_ALL_NOTEBOOKS=1`) selects every registered method instead: before a release, or after changing a
method's defaults.
"""

import os

REPRESENTATIVES = ("my_method", "retrain", "sibl", "pdu", "scrub", "salun", "kookmin", "forget", "ng", "ams")

#: notebooks executed end to end: every method's pasted cell already runs in-process
#: (tests/test_notebook_utils.py) and its shipped defaults on the same ResNet-18 (test_shipped_defaults),
#: so what an executed notebook adds is its own pipeline, the same for every method. These few cover
#: its paths: a network trained from scratch (retrain, with the training module pasted), re-initialised
#: layers and scaled gradients (kookmin), a mask with relabelled forget data (salun), the request
#: generator behind run() (ams); my_method's notebook is the rehearsal's (tests/eval/harness/test_rehearsal.py).
NOTEBOOKS = ("retrain", "kookmin", "salun", "ams")


def selected(available, exclude=(), representatives=REPRESENTATIVES) -> list[str]:
    """The representatives that are registered, or every registered method under UNLEARN_ALL."""
    if os.environ.get("UNLEARN_ALL") or os.environ.get("UNLEARN_ALL_NOTEBOOKS"):
        return [k for k in available if k not in exclude]
    return [k for k in representatives if k in available and k not in exclude]
