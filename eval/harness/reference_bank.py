"""The reference a preset is scored against: its exact bank (`bank.Bank`, retrained without this forget
set) or, with `--bank subsets`, the view of a subset bank that serves every random forget set
(`subset_bank.SubsetReference`). Both offer what building and scoring read."""

from eval.harness.bank import Bank
from eval.harness.subset_bank import SubsetBank, SubsetReference


def make_bank(preset, splits, home=None, data_root=None, device="cpu") -> Bank | SubsetReference:
    """`preset`'s reference for `splits`: ValueError if a subset bank cannot serve this forget set."""
    if preset.bank == "subsets":
        return SubsetBank(preset, splits, preset.bank_size, home=home, device=device).view(splits)
    return Bank(preset, splits, home=home, data_root=data_root, device=device)
