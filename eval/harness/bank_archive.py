"""A bank as one file a team shares: export to a tar archive with a manifest of checksums, import verified.

A 512-model bank costs tens of GPU-hours; one person builds it and everyone else reuses it. The archive
holds `bank-manifest.json` first (format, what the bank is: preset, forget set, kind, size, its key and
the config the key hashes, and the SHA-256 and size of every file), then the bank's checkpoints, cached
outputs and manifest; runs, locks and views stay behind (they are cheap and name this machine's code).

Import reads the manifest, rebuilds the preset and the splits it names, and computes the bank's key with
this checkout's code and data: a different key (another recipe, data or training code) is refused with
both keys and what differs, before anything is written. Every member is then checked against its
checksum while it is extracted into a staging folder beside the target; any mismatch, extra or missing
file, link or path leaving the folder refuses the archive and removes the staging folder. Only then is
the staging folder renamed into place (one step), or, where the bank folder exists already, each verified
file the bank lacks is moved in (each move atomic; files the bank has are compared, never overwritten).
"""

import dataclasses
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import torch

FORMAT = "unlearning-kit-bank/1"
MANIFEST = "bank-manifest.json"
FORGET_FIELDS = ("forget_seed", "forget_frac", "forget_size", "forget_class", "forget_set", "n_train")


class ArchiveError(ValueError):
    """The archive cannot be installed: tampered, incomplete, or built by other code or data."""


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def bank_files(bank, names) -> list[str]:
    """Paths relative to the bank's folder of models `names`: checkpoint and outputs each, then manifest.json."""
    rel = []
    for name in names:
        rel += [f"models/{name}.pt", f"outputs/{name}.npz"]
    if (bank.dir / "manifest.json").exists():
        rel.append("manifest.json")
    return rel


def describe(preset, bank, kind: str) -> dict:
    """What the manifest says the bank is (everything import needs to rebuild its key)."""
    return {
        "format": FORMAT,
        "kind": kind,
        "preset": preset.name,
        "forget": {f: getattr(preset, f) for f in FORGET_FIELDS},
        "n_retrained": preset.n_retrained,
        "bank_size": preset.bank_size,
        "key": bank.key,
        "config": bank.config,
        "folder": f"{bank.dir.parent.name}/{bank.dir.name}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": str(torch.__version__),
    }


def export(bank_dir: Path, files: list[str], description: dict, out: Path) -> dict:
    """Write the archive `out` (atomically: a temporary file, then renamed) and return its manifest."""
    manifest = {**description, "files": {}}
    for rel in files:
        p = bank_dir / rel
        manifest["files"][rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
            blob = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(blob), int(time.time())
            tar.addfile(info, io.BytesIO(blob))
            for rel in files:
                tar.add(bank_dir / rel, arcname=rel, recursive=False)
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def read_manifest(archive: Path) -> dict:
    """The archive's manifest, checked for form; ArchiveError otherwise."""
    try:
        with tarfile.open(archive, mode="r") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise ArchiveError(f"{archive}: not a bank archive (its first member must be {MANIFEST})")
            manifest = json.loads(tar.extractfile(first).read())
    except (tarfile.TarError, OSError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{archive}: cannot read it as a bank archive: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise ArchiveError(f"{archive}: format {manifest.get('format')!r}, this kit reads {FORMAT!r}")
    for field in ("kind", "preset", "forget", "key", "config", "folder", "files"):
        if field not in manifest:
            raise ArchiveError(f"{archive}: its manifest lacks {field!r}")
    return manifest


def preset_of(manifest: dict, get_preset):
    """The preset the manifest describes, rebuilt from this checkout's named preset and its forget fields."""
    preset = get_preset(manifest["preset"])
    forget = {k: v for k, v in manifest["forget"].items() if k in FORGET_FIELDS}
    preset = dataclasses.replace(preset, **forget)
    if manifest["kind"] == "subsets":
        return preset.with_bank("subsets", manifest["bank_size"])
    return preset.with_counts(retrained=manifest["n_retrained"])


def check_key(manifest: dict, bank) -> None:
    """ArchiveError unless this checkout computes the archive's key for the bank it describes."""
    if bank.key == manifest["key"]:
        return
    theirs, ours = manifest["config"], bank.config
    differs = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    raise ArchiveError(
        f"the archive's bank has key {manifest['key']}, but this checkout computes {bank.key} for the same preset "
        f"and forget set: they differ in {', '.join(differs) or 'the config'} (the training code, recipe or data "
        "changed since it was built); nothing was installed. Check out the kit's version that built it, or rebuild"
    )


def _safe(rel: str) -> bool:
    p = Path(rel)
    return not p.is_absolute() and ".." not in p.parts and len(p.parts) == 2 and p.parts[0] in ("models", "outputs")


def install(archive: Path, manifest: dict, target: Path) -> dict:
    """Verify every member against the manifest into a staging folder beside `target`, then install it.

    Returns {"installed": [...], "kept": [...]} (files moved in, files the bank already had identical).
    ArchiveError, with nothing installed, on any mismatch."""
    expected = manifest["files"]
    bad = [rel for rel in expected if rel != "manifest.json" and not _safe(rel)]
    if bad:
        raise ArchiveError(f"{archive}: its manifest names files outside a bank's folders: {bad[:3]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.import."))
    try:
        seen = set()
        with tarfile.open(archive, mode="r") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                if member.name not in expected or not member.isfile() or member.name in seen:
                    raise ArchiveError(f"{archive}: member {member.name!r} is not in its manifest (or not a file)")
                dest = staging / member.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                h, size = hashlib.sha256(), 0
                with tar.extractfile(member) as src, open(dest, "wb") as out:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        h.update(block)
                        size += len(block)
                        out.write(block)
                want = expected[member.name]
                if h.hexdigest() != want["sha256"] or size != want["bytes"]:
                    raise ArchiveError(f"{archive}: {member.name} does not match its checksum: tampered or damaged")
                seen.add(member.name)
        if seen != set(expected):
            raise ArchiveError(f"{archive}: missing {sorted(set(expected) - seen)[:3]}: the archive is incomplete")
        if not target.exists():
            staging.replace(target)
            return {"installed": sorted(seen), "kept": []}
        kept, todo = [], []
        for rel in sorted(seen - {"manifest.json"}):  # the bank's own manifest.json is rebuilt, not merged
            if not (target / rel).exists():
                todo.append(rel)
            elif sha256_file(target / rel) == expected[rel]["sha256"]:
                kept.append(rel)
            else:
                raise ArchiveError(
                    f"{target / rel} exists and differs from the archive's; nothing was installed. "
                    "Remove that bank folder to install the archive"
                )
        for rel in todo:  # each verified file the bank lacks, moved in atomically
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).replace(target / rel)
        if todo:  # the bank's manifest.json is rebuilt from the checkpoints, now with the new models
            (target / "manifest.json").unlink(missing_ok=True)
        return {"installed": todo, "kept": kept}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
