"""Import a callable named as data, ``"package.module:attribute"`` (backend factories, CLI subcommands).

One place for the lazy-import convention the registries use, so a missing optional module or attribute
always becomes a one-line error that says what is missing and what to do instead.
"""

from __future__ import annotations

import importlib
from typing import Any

from tools.domain import InputError, RadDiffError


def load_target(target: str, *, what: str, hint: str = "", error: type[RadDiffError] = InputError) -> Any:
    """Return the attribute ``target`` names (``"module:attr"``), imported now.

    A missing module (the module itself, not one of its imports) or a missing attribute raises ``error`` with
    ``what`` (e.g. "the 'mini' describer") and ``hint``; any other import failure propagates unchanged.
    """
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise error(f"{what}: {target!r} is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not exc.name or not module_name.startswith(exc.name):
            raise
        detail = f"; {hint}" if hint else ""
        raise error(f"{what} is not available: {module_name} is not in this installation{detail}") from None
    found = getattr(module, attr, None)
    if found is None:
        raise error(f"{what}: {module_name} has no {attr!r}; the installation is incomplete")
    return found
