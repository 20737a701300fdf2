"""A scored evaluation as it is kept on disk: `<name>.json` (the record) and `<name>.npz` (its raw statistics),
always written as a pair, or `<name>.failed.json` for a failure, which keeps the last good pair beside it."""

from dataclasses import dataclass
from pathlib import Path

from eval.io import file_lock, remove_orphans, write_json, write_npz


@dataclass
class Record:
    """One evaluation's result: `fields` is the JSON record (status, method, preset, params, the scores...),
    `arrays` the raw statistics of the .npz (None for a failure), `path` the JSON once written."""

    name: str
    fields: dict
    arrays: dict | None = None
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.fields.get("status") == "ok"

    def __getitem__(self, key: str):
        return self.fields[key]

    def get(self, key: str, default=None):
        return self.fields.get(key, default)


def write_record(out_dir, record: Record) -> Path:
    """Write `record` into `out_dir`: <name>.json and .npz on success (a stale <name>.failed.json removed), or
    <name>.failed.json on failure, keeping the last good result; returns the JSON's path (also `record.path`)."""
    out_dir, key = Path(out_dir), record.name
    with file_lock(out_dir / f".{key}.lock"):
        for name in (f"{key}.json", f"{key}.npz", f"{key}.failed.json"):
            remove_orphans(out_dir / name)
        if not record.ok:
            record.path = out_dir / f"{key}.failed.json"
            write_json(record.path, record.fields)
            return record.path
        write_npz(out_dir / f"{key}.npz", **record.arrays)
        record.path = out_dir / f"{key}.json"
        write_json(record.path, record.fields)
        (out_dir / f"{key}.failed.json").unlink(missing_ok=True)
        return record.path
