"""The cache manifest: what produced a cache, and the checks that compare manifests.

A manifest is a JSON object stored in the file's ``manifest`` attribute. Its keys fall in two
groups:

- identity (:data:`IDENTITY_KEYS`): everything that changes the numbers in ``/features`` --
  backbone, layer, grid, weights, preprocessing, storage dtype, compute precision, and the plan
  (the id list's digest and the batch size, which fixes batch composition). Two caches whose
  identities agree hold bit-identical grids for the same image file on the same kind of machine.
  Shards must agree on it to be merged.
- provenance: ``source`` (image folder, dataset), ``counts``, ``shard``, ``created``,
  ``versions``, ``merged_from``. Useful to a person, not compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

IDENTITY_KEYS = (
    "format_version",
    "backbone",
    "layer",
    "grid",
    "channels",
    "weights",
    "preprocessing",
    "dtype",
    "compute",
    "plan",
)


def created_now() -> str:
    """The ``created`` stamp: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def dumps(manifest: Mapping[str, Any]) -> str:
    """Canonical JSON text (sorted keys), so equal manifests have equal text."""
    return json.dumps(manifest, sort_keys=True, ensure_ascii=False)


def normalise(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys become strings)."""
    return json.loads(json.dumps(value))


def ids_digest(ids: Iterable[str]) -> str:
    """sha256 of an ordered id list; identifies the plan without storing every id twice."""
    return hashlib.sha256(json.dumps(list(ids), ensure_ascii=False).encode("utf-8")).hexdigest()


def identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {key: manifest.get(key) for key in IDENTITY_KEYS}


def mismatches(found: Mapping[str, Any], expect: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every key of ``expect`` whose value differs in ``found``, as ``"key: expected X, found Y"``.

    Nested dicts are compared key by key, and only on the keys ``expect`` names, so a caller can
    pin ``{"preprocessing": {"size": [224, 224]}}`` without restating the rest. The message
    names the dotted path of the deepest differing key.
    """
    problems = []
    for key, wanted in normalise(dict(expect)).items():
        path = f"{prefix}{key}"
        if key not in found:
            problems.append(f"{path}: expected {wanted!r}, found nothing (key absent)")
            continue
        have = found[key]
        if isinstance(wanted, dict) and isinstance(have, dict):
            problems.extend(mismatches(have, wanted, prefix=f"{path}."))
        elif have != wanted:
            problems.append(f"{path}: expected {wanted!r}, found {have!r}")
    return problems


def fingerprint(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change between an extraction and its resumption: the identity and the source
    (the shard is part of the plan itself)."""
    return {**identity(manifest), "source": manifest.get("source")}
