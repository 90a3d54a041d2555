"""Reading a versioned JSON manifest (of a corpus or of a prepared dataset) with errors that say what to do."""

from __future__ import annotations

import json
from pathlib import Path


def read_versioned_manifest(path: Path, fmt: str, version: int, *, what: str, missing: str, hint: str) -> dict:
    """The manifest at ``path``, checked to be ``fmt`` version ``version``.

    Raises FileNotFoundError(``missing``) when the file is absent, and ValueError naming ``what``
    (e.g. "corpus manifest <path>") and ending in ``hint`` when it is not JSON or not that format.
    """
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} is not valid JSON ({e}); {hint}") from None
    if manifest.get("format") != fmt or manifest.get("format_version") != version:
        raise ValueError(
            f"{path} is not a {fmt} v{version} manifest "
            f"(format={manifest.get('format')!r}, version={manifest.get('format_version')!r}); {hint}"
        )
    return manifest
