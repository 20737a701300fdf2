"""A bank shared as one file (`--export-bank FILE`, `--import-bank FILE`): `eval/harness/bank_archive.py`
does the archive; this resolves which bank the options name and checks it before any work."""

from pathlib import Path

from data.presets import get_preset
from data.splits import make_splits
from eval.harness import bank_archive
from eval.harness.bank import Bank
from eval.harness.subset_bank import SubsetBank

from .errors import UsageError
from .options import DEFAULTS, QUIET, Console, Options, check_home, resolve


def _bank(preset, splits, options: Options, device: str):
    """(the bank object, its kind, the model names an archive holds) for `preset`."""
    if preset.forget_set != "random":
        raise UsageError(
            "a memorization forget set's bank depends on the estimate's models: export and import the random or "
            "class-wise banks (or a subset bank)"
        )
    if preset.bank == "subsets":
        bank = SubsetBank(preset, splits, preset.bank_size, home=options.home, device=device)
        return bank, "subsets", bank.names()
    bank = Bank(preset, splits, home=options.home, data_root=options.data_root, device=device)
    return bank, "exact", ["original", *bank.retrained_names(preset.n_retrained)]


def export_bank(path, *, options: Options = DEFAULTS, console: Console = QUIET) -> dict:
    """Write the bank `options` name (complete) to the archive `path`; returns its manifest."""
    device, preset = resolve(options)
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"--export-bank {out}: is a folder; give the archive's file name (e.g. bank.tar)")
    splits = make_splits(preset, options.data_root)
    bank, kind, names = _bank(preset, splits, options, device)
    missing = [n for n in names if not bank.complete(n)]
    if missing:
        raise UsageError(
            f"bank {bank.dir} lacks {len(missing)} of its {len(names)} models ({', '.join(missing[:3])}...): build "
            "it first (the same flags with -m none), then export it"
        )
    files = bank_archive.bank_files(bank, names)
    console.info(f"exporting {bank.dir} ({len(names)} models, key {bank.key}) to {out}")
    return bank_archive.export(bank.dir, files, bank_archive.describe(preset, bank, kind), out)


def import_bank(path, *, options: Options = DEFAULTS, console: Console = QUIET) -> dict:
    """Verify the archive `path` against this checkout's code and data, then install it under the artifacts
    folder; returns {"dir", "key", "installed", "kept"}. UsageError (nothing installed) on any mismatch."""
    archive = Path(path)
    if not archive.is_file():
        raise UsageError(f"--import-bank {archive}: no such file")
    check_home(options)
    try:
        manifest = bank_archive.read_manifest(archive)
        preset = bank_archive.preset_of(manifest, get_preset)
    except (bank_archive.ArchiveError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    splits = make_splits(preset, options.data_root)
    bank, kind, _ = _bank(preset, splits, options, "cpu")
    try:
        if kind != manifest["kind"]:
            raise bank_archive.ArchiveError(f"the archive holds a {manifest['kind']} bank, not {kind}")
        bank_archive.check_key(manifest, bank)
        console.info(f"verifying {len(manifest['files'])} files of bank {bank.key} into {bank.dir}")
        done = bank_archive.install(archive, manifest, bank.dir)
    except bank_archive.ArchiveError as exc:
        raise UsageError(str(exc)) from None
    return {"dir": str(bank.dir), "key": bank.key, **done}
