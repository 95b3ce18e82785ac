"""Generate the built-in object catalog from a checkout of the OMA LwM2M registry.

Usage: python scripts/generate_builtin_models.py REGISTRY_DIR [--output FILE]

REGISTRY_DIR is a copy of https://github.com/OpenMobileAlliance/lwm2m-registry
(BSD-3-Clause). The registry keeps the newest version of object N as ``N.xml`` and,
when present, every version in ``version_history/N-X_Y.xml``; all versions of the
selected objects are kept. Only facts are written (ids, names, versions, URNs,
multiplicity, operations, types, ranges, units): description texts are left out.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from meadowlark.lwm2m.model.ddf import DdfError, parse_ddf
from meadowlark.lwm2m.model.registry import models_to_json, version_key
from meadowlark.lwm2m.model.types import ObjectModel

CORE_OBJECT_IDS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 16, 19, 20, 21})
IPSO_OBJECT_IDS = range(3200, 3351)
DDF_FILE_NAME = re.compile(r"(?P<id>\d+)(?:-\d+_\d+)?\.xml")
SOURCE_NOTE = (
    "Facts derived from the OMA LwM2M Registry "
    "(https://github.com/OpenMobileAlliance/lwm2m-registry), "
    "Copyright Open Mobile Alliance, BSD-3-Clause; descriptions omitted."
)
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent / "src/meadowlark/lwm2m/model/builtin/objects.json"
)


def is_selected(object_id: int) -> bool:
    return object_id in CORE_OBJECT_IDS or object_id in IPSO_OBJECT_IDS


def ddf_files(registry_dir: Path) -> list[Path]:
    """Object DDF files of the selected objects, newest-version files first."""
    found: list[Path] = []
    for folder in (registry_dir, registry_dir / "version_history"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = DDF_FILE_NAME.fullmatch(path.name)
            if match and is_selected(int(match["id"])):
                found.append(path)
    return found


def collect_models(registry_dir: Path) -> list[ObjectModel]:
    """One model per (object id, version); the root folder wins over version history."""
    models: dict[tuple[int, str], ObjectModel] = {}
    for path in ddf_files(registry_dir):
        try:
            parsed = parse_ddf(path.read_bytes())
        except DdfError as exc:
            raise SystemExit(f"{path}: {exc}") from None
        for model in parsed:
            if is_selected(model.id):
                models.setdefault((model.id, model.version), model)
    return sorted(models.values(), key=lambda m: (m.id, version_key(m.version)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("registry_dir", type=Path, help="folder holding the registry DDFs")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    models = collect_models(args.registry_dir)
    if not models:
        raise SystemExit(f"no DDF files of the selected objects in {args.registry_dir}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(models_to_json(models, source=SOURCE_NOTE), encoding="utf-8")
    resources = sum(len(model.resources) for model in models)
    print(f"wrote {len(models)} object models, {resources} resources to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
