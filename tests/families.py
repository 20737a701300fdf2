"""One method per family of shared blocks, for checks where running every method adds little and costs minutes.

The template, the reference, bilevel/HVP, primal-dual, teacher, saliency masks, gradient scaling,
re-initialised layers, paired retain/forget steps, sequential requests. `UNLEARN_ALL=1` (or the older
`UNLEARN_ALL_NOTEBOOKS=1`) selects every registered method instead: before a release, or after changing a
method's defaults.
"""
import os

REPRESENTATIVES = ("my_method", "retrain", "sibl", "pdu", "scrub", "salun", "kookmin", "forget", "ng", "ams")


def selected(available, exclude=()) -> list[str]:
    """The representatives that are registered, or every registered method under UNLEARN_ALL."""
    if os.environ.get("UNLEARN_ALL") or os.environ.get("UNLEARN_ALL_NOTEBOOKS"):
        return [k for k in available if k not in exclude]
    return [k for k in REPRESENTATIVES if k in available and k not in exclude]
