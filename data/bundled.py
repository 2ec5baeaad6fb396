"""Datasets that ship inside the package, by name, and resolution of a user's ``dataset=`` value.

``dataset=citylearn_2022`` works from any directory after ``pip install``: the name maps to a folder under
``vpprl/data/datasets/`` (gzip CSVs + schema.json + LICENSE, provenance in ``data/PROVENANCE.md``). Any
other value is a path to a CityLearn-format directory.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"

#: name -> folder under ``DATASETS_DIR``
BUNDLED_DATASETS: dict[str, str] = {
    "citylearn_2022": "citylearn_challenge_2022_phase_all_plus_evs",
}


def bundled_dataset_path(name: str) -> Path:
    """The installed folder of a bundled dataset."""
    if name not in BUNDLED_DATASETS:
        raise ValueError(f"unknown bundled dataset {name!r}; bundled: {sorted(BUNDLED_DATASETS)}")
    return DATASETS_DIR / BUNDLED_DATASETS[name]


def resolve_dataset(name_or_path: str | Path) -> Path:
    """A bundled dataset's folder for its name, else the given directory; a clear error if neither exists."""
    key = str(name_or_path)
    if key in BUNDLED_DATASETS:
        return bundled_dataset_path(key)
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset {key!r}: no such directory ({path.resolve()}) and not a bundled dataset name; "
            f"bundled: {sorted(BUNDLED_DATASETS)}; or give a directory holding a CityLearn schema.json"
        )
    return path


def plain_copy(name: str, dest: Path) -> Path:
    """A writable copy of a bundled dataset in ``dest/<folder>`` with every CSV decompressed (for tools that
    read plain CSVs only, such as CityLearn itself, or for editing)."""
    src = bundled_dataset_path(name)
    out = Path(dest) / src.name
    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix == ".gz":
            with gzip.open(f, "rb") as fin, open(out / f.stem, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        elif f.is_file() and f.name != "__init__.py":
            shutil.copy(f, out / f.name)
    return out
