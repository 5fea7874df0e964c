"""Backends named as data: one :class:`Registry` per kind (scorer, describer, policy, judge), and
``load_target("package.module:attribute")`` for the lazy imports they (and the CLI subcommands) use.

A backend is registered as a :class:`Backend` record: its name (the id prefix), the id syntax, a one-line
description, its factory as a lazy ``"module:attr"`` target, an install hint for when that module is missing,
and a cheap availability check (weights file present, optional extra importable, credentials set, CUDA
present...). :meth:`Registry.parse` turns an id into ``(backend, argument)``, :meth:`Registry.load` imports
the factory only then, and :meth:`Registry.listing` says what exists and whether it is usable here
(``raddiff backends``). A missing optional module or attribute always becomes a one-line error that says
what is missing and what to do instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlparse

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


class Availability(NamedTuple):
    """Whether a backend can be used on this machine, and why not (or what it uses) in a few words."""

    usable: bool
    reason: str


Check = Callable[[str], Availability]
"""An availability check: given the id's argument ("" when none is given), say whether it is usable here."""

ArgumentRule = Literal["none", "required", "optional"]


@dataclass(frozen=True)
class Backend:
    """One registered backend (data only: nothing is imported until :meth:`Registry.load`).

    ``argument``: ``none`` (the id is the bare name), ``required`` (``name:ARG``) or ``optional`` (either).
    ``fallback``: the backend takes every id no other entry claims (e.g. a bare model name on a server).
    ``capabilities``: free-form flags the rest of the project asks the registry about (``scores="reports"``).
    """

    name: str
    syntax: str
    description: str
    factory: str
    argument: ArgumentRule = "none"
    aliases: tuple[str, ...] = ()
    check: Check | None = None
    install: str = ""
    fallback: bool = False
    capabilities: Mapping[str, str] = field(default_factory=dict)

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The name and its aliases: what an id starts with to select this backend."""
        return (self.name, *self.aliases)


class Registry:
    """The backends of one kind (``"scorer"``, ``"describer"``...), in registration order."""

    def __init__(self, kind: str, *, case_sensitive: bool = True) -> None:
        self.kind = kind
        self.case_sensitive = case_sensitive
        self._backends: dict[str, Backend] = {}
        self._prefixes: dict[str, Backend] = {}

    def _key(self, text: str) -> str:
        return text if self.case_sensitive else text.lower()

    def register(self, backend: Backend) -> Backend:
        """Add ``backend``; a name or alias that is already taken raises ``ValueError`` (a programming error).

        A fallback backend's name is a label only: it selects no ids of its own (it takes the unclaimed ones).
        """
        if backend.name in self._backends:
            raise ValueError(f"{self.kind} registry: {backend.name!r} is already registered")
        prefixes = () if backend.fallback else backend.prefixes
        for prefix in prefixes:
            if self._key(prefix) in self._prefixes:
                raise ValueError(f"{self.kind} registry: {prefix!r} is already registered")
        if backend.fallback and any(b.fallback for b in self._backends.values()):
            raise ValueError(f"{self.kind} registry: only one fallback backend")
        self._backends[backend.name] = backend
        for prefix in prefixes:
            self._prefixes[self._key(prefix)] = backend
        return backend

    def entries(self) -> list[Backend]:
        """Every registered backend, in registration order."""
        return list(self._backends.values())

    def get(self, name: str) -> Backend:
        """The backend registered as ``name`` (or an alias); an unknown name raises a one-line ``InputError``."""
        found = self._backends.get(name) or self._prefixes.get(self._key(name))
        if found is None:
            raise InputError(f"{self.kind} {name!r}: unknown backend (known: {self.known_ids()})")
        return found

    def known_ids(self) -> str:
        """The id syntaxes of every backend, for error messages: ``mini, chexzero:PATH, ...``."""
        return ", ".join(b.syntax for b in self._backends.values())

    def find(self, text: str) -> tuple[Backend, str] | None:
        """``(backend, argument)`` for an id, or None when no backend claims it (no error; see :meth:`parse`).

        ``name`` selects a backend whose argument is ``none`` or ``optional``; ``name:ARG`` (the first colon
        separates, so arguments may contain colons) one whose argument is ``required`` or ``optional``, with
        ARG stripped (possibly empty: the kind's own parser says what is missing). Anything else goes to the
        fallback backend, if any, with the whole id as its argument.
        """
        value = (text or "").strip()
        if not value:
            return None
        prefix, sep, rest = value.partition(":")
        backend = self._prefixes.get(self._key(prefix.strip()))
        if backend is not None:
            if not sep and backend.argument != "required":
                return backend, ""
            if sep and backend.argument != "none":
                return backend, rest.strip()
        fallback = next((b for b in self._backends.values() if b.fallback), None)
        return (fallback, value) if fallback is not None else None

    def parse(self, text: str) -> tuple[Backend, str]:
        """Like :meth:`find`, but an empty or unknown id raises a one-line ``InputError`` listing the known ids."""
        value = (text or "").strip()
        if not value:
            raise InputError(f"{self.kind}: empty id (known: {self.known_ids()}; see `raddiff backends`)")
        found = self.find(value)
        if found is None:
            raise InputError(
                f"{self.kind} {value!r}: unknown backend (known: {self.known_ids()}; see `raddiff backends`)"
            )
        return found

    def capability(self, text: str, name: str) -> str | None:
        """The capability flag ``name`` of the backend an id selects (None for an unknown id or no such flag)."""
        found = self.find(text)
        return None if found is None else found[0].capabilities.get(name)

    def load(self, backend: Backend | str, *, error: type[RadDiffError] = InputError) -> Any:
        """Import the backend's factory now; a missing module raises ``error`` with the install hint."""
        entry = self.get(backend) if isinstance(backend, str) else backend
        return load_target(entry.factory, what=f"the {entry.name!r} {self.kind}", hint=entry.install, error=error)

    def availability(self, backend: Backend | str, argument: str = "") -> Availability:
        """Whether the backend is usable here (its check; a backend without one needs nothing)."""
        entry = self.get(backend) if isinstance(backend, str) else backend
        if entry.check is None:
            return Availability(True, "nothing needed")
        return entry.check(argument)

    def listing(self) -> list[dict[str, Any]]:
        """One JSON-able row per backend: kind, name, syntax, description, usable, reason."""
        rows = []
        for entry in self._backends.values():
            usable, reason = self.availability(entry)
            rows.append(
                {
                    "kind": self.kind,
                    "name": entry.name,
                    "syntax": entry.syntax,
                    "description": entry.description,
                    "usable": usable,
                    "reason": reason,
                }
            )
        return rows


# ---------------------------------------------------------------- cheap checks shared by the registries


def module_available(name: str) -> bool:
    """True when ``name`` can be imported (found on the path; nothing is imported)."""
    if name in sys.modules:
        return True
    parent = name.rpartition(".")[0]
    if parent and not module_available(parent):
        return False
    return importlib.util.find_spec(name) is not None


def cuda_present() -> bool:
    """True when a CUDA device is visible, without importing torch (torch's answer when it is imported)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def loopback_reachable(url: str, timeout_s: float = 0.2) -> bool | None:
    """For a URL on this machine (127.0.0.1, localhost, ::1): whether something listens on its port.

    None for any other host: nothing is probed over the network.
    """
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:  # refused or timed out: that is the answer, nothing listens there
        return False


def needs_modules(*names: str, install: str = "") -> Availability | None:
    """None when every module is importable; else an unusable :class:`Availability` naming the first missing."""
    for name in names:
        if not module_available(name):
            hint = f" ({install})" if install else ""
            return Availability(False, f"{name} is not installed{hint}")
    return None


def openai_endpoint(base_url: str | None = None, *, module: str = "", flag: str = "--llm-base-url") -> Availability:
    """Whether an OpenAI-compatible endpoint is configured: ``base_url`` (else ``OPENAI_BASE_URL``) or
    ``OPENAI_API_KEY``; a base URL on this machine is probed (a short TCP connect), any other is not.
    ``module``: a client package that must be importable too (e.g. ``langchain_openai``); ``flag``: the
    command-line flag that gives the base URL, for the message."""
    if module:
        missing = needs_modules(module)
        if missing:
            return missing
    key = os.environ.get("OPENAI_API_KEY")
    base = base_url or os.environ.get("OPENAI_BASE_URL")
    if base:
        answering = loopback_reachable(base)
        if answering is False:
            return Availability(False, f"nothing listens at {base}")
        state = "answers" if answering else "(remote: not probed)"
        return Availability(True, f"server at {base} {state}" + ("; OPENAI_API_KEY set" if key else ""))
    if key:
        return Availability(True, "OPENAI_API_KEY set (OpenAI)")
    return Availability(False, f"OPENAI_API_KEY not set, and no base URL (OPENAI_BASE_URL or {flag})")


def openai_compatible_backends(*, what: str, factory: str, flag: str) -> tuple[Backend, Backend]:
    """The two entries of an LLM backend behind an OpenAI-compatible chat endpoint (langchain-openai):
    ``openai:MODEL`` and, as the catch-all, a bare model name served at ``flag``'s base URL. ``what`` names the
    backend in their descriptions ("The LLM policy")."""

    def check(argument: str) -> Availability:
        return openai_endpoint(module="langchain_openai", flag=flag)

    common: dict[str, Any] = {"factory": factory, "check": check, "install": "pip install langchain-openai"}
    return (
        Backend(
            name="openai",
            syntax="openai:MODEL",
            description=f"{what} on an OpenAI model (or the OpenAI-compatible server of {flag}).",
            argument="required",
            **common,
        ),
        Backend(
            name="model",
            syntax="MODEL",
            description=f"{what} on a model name served by an OpenAI-compatible server ({flag}).",
            fallback=True,
            **common,
        ),
    )
