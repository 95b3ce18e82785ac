"""The import-layer contracts (``make layers``) see only regular packages: a folder of
modules without ``__init__.py`` is a namespace package that import-linter skips, so its
imports would escape every contract."""

from __future__ import annotations

from pathlib import Path

import meadowlark

PACKAGE = Path(meadowlark.__file__).parent
# Alembic loads these scripts by path; nothing imports them.
NOT_IMPORTED = {PACKAGE / "store" / "migrations", PACKAGE / "store" / "migrations" / "versions"}


def test_every_folder_of_modules_is_a_regular_package() -> None:
    namespace_packages = sorted(
        str(folder.relative_to(PACKAGE))
        for folder in PACKAGE.rglob("*")
        if folder.is_dir()
        and folder not in NOT_IMPORTED
        and any(folder.glob("*.py"))
        and not (folder / "__init__.py").exists()
    )
    assert namespace_packages == []
