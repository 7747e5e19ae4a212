"""The pipeline's state saved under `state.dir` and taken back at start (issue 13 point 1).

What the pipeline knows between events (enrichment, dedupe history, activity, time-in-quality, detail
context) lives in memory; `StateFile` keeps a copy of it in `<state.dir>/pipeline-state.bin`, written

* every `state.checkpoint_interval_seconds` while the agent runs, so that a crash (SIGKILL, OOM kill)
  loses at most that interval and the write's own duration;
* once more at SIGTERM, after the listeners stopped taking events, within the shutdown budget;

and read back once before the listeners start. Each part (`Stateful`) gives a `snapshot()` of plain
data (taken on the event loop, so it is consistent with the events processed) and takes it back with
`restore(data)`. The snapshot is serialised (msgpack) and checksummed on the event loop in slices
that hold it ~2 ms at most, between which it serves events: on a thread, the serialiser held the GIL
and the loop waited for it at every I/O step (webhook p99 of seconds at 50k participants); then a
thread fsyncs the temporary file and renames it over the old one (a crash mid-write leaves the
previous file whole). Interval checkpoints were chosen over a per-event journal by measurement
(docs/performance.md): a journal that survives a crash needs an fsync per event.

The file: MAGIC, then the schema number (4 bytes), the body's length (8) and its CRC-32 (4), then the
msgpack body `{"written": unix time, "version": agent version, "parts": {name: snapshot}}`. A file
that is not ours (foreign), fails its checksum or does not decode (corrupt), or has a newer schema
than this agent reads (newer) is renamed to `<name>.<reason>-<UTC time>` beside it, never deleted,
reported in the log and in `zoom_qss_state_restore{outcome}`, and the agent starts empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import itertools
import logging
import os
import struct
import time
import zlib
from array import array
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import msgpack

from qss_exporter import __version__
from qss_exporter.store import CounterFamily, GaugeFamily, Store

__all__ = [
    "CHECKPOINT_OUTCOMES",
    "FILE_NAME",
    "LABELLED_PARTS",
    "MAGIC",
    "RESTORE_OUTCOMES",
    "SCHEMA",
    "StateFamilies",
    "StateFile",
    "Stateful",
    "body_chunks",
    "decode",
    "encode",
]

log = logging.getLogger(__name__)

FILE_NAME = "pipeline-state.bin"
LOCK_NAME = "pipeline-state.lock"
MAGIC = b"qss-exporter/st\n"  # 16 bytes
SCHEMA = 3  # raise it when a part's snapshot changes shape; a file of a newer one is set aside
# 2: the dedupe history is keyed by participant bucket (dedupe.participant_bucket), activity and
# enrichment save their times and labels in columns; each part still takes a schema 1 snapshot back.
# 3: the time part's states hold the record times first (timekeeping.LAYOUT); 1 and 2 files are taken back.
_HEADER = struct.Struct(">IQI")  # schema, body length, CRC-32 of the body

# Parts whose snapshots hold label values that include the enrichment labels: restored only when the
# enrichment labels are the ones they were saved with (else their series would have the wrong width).
LABELLED_PARTS = frozenset({"participants", "time"})

RESTORE_OUTCOMES = ("restored", "none", "corrupt", "foreign", "newer", "unreadable")
CHECKPOINT_OUTCOMES = ("written", "failed")


class Stateful(Protocol):
    """A part of the pipeline that holds state between events.

    `snapshot()` runs on the event loop and must be cheap (it delays every webhook): fresh containers
    made with C-level copies, best in columns (`list(table)`, `list(table.values())`: no object per
    entry, ~2 ms for every part at 10k participants); their leaves may be the part's own immutable
    tuples and, where copying them at once would cost, its live bytearrays, arrays or lists, which the
    serialiser reads slice by slice between events (each entry whole, as of when it is packed).
    msgpack turns tuples into lists: `restore` takes either.
    """

    def snapshot(self) -> Mapping[str, Any]: ...

    def restore(self, data: Mapping[str, Any]) -> None: ...


class StateError(Exception):
    """The file is not a state file this agent can read; `reason` is one of RESTORE_OUTCOMES."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


_SLICE = 256  # entries of a long list packed per call
_FLUSH_BYTES = 1 << 20
# While events arrive, a checkpoint packs for at most SLICE_SECONDS, then leaves the event loop as long
# again (half of the loop at most: at 50k participants, packing back to back took most of the loop for
# ~0.5 s and webhook p50 went from 3 to 90 ms at 500 events/s, bench/persist.py).
SLICE_SECONDS = 0.001


def _default(value: object) -> object:
    if isinstance(value, array):
        return value.tobytes()
    raise TypeError(f"cannot save {type(value).__name__}")


def body_chunks(parts: Mapping[str, Any], written: float) -> Iterator[bytes]:
    """The msgpack body for `parts` (snapshots), written at unix time `written`, in small pieces.

    A long list is packed _SLICE entries per msgpack call: one call over a 50k-participant snapshot
    holds the GIL for the whole ~0.4 s it takes, on whichever thread it runs (measured: on a thread,
    the event loop then waits for the GIL at every I/O step and webhook p99 went to seconds).
    """
    packer = msgpack.Packer(default=_default, use_bin_type=True)

    def pack(value: object) -> Iterator[bytes]:
        if isinstance(value, dict):
            yield packer.pack_map_header(len(value))
            for key, item in value.items():
                yield packer.pack(key)
                yield from pack(item)
        elif isinstance(value, list) and len(value) > _SLICE:
            yield packer.pack_array_header(len(value))
            for index in range(0, len(value), _SLICE):
                yield b"".join([packer.pack(item) for item in value[index : index + _SLICE]])
        else:
            yield packer.pack(value)

    yield from pack({"written": written, "version": __version__, "parts": dict(parts)})


def encode(parts: Mapping[str, Any], written: float) -> bytes:
    """The whole file for `parts` as bytes (tests, benchmarks)."""
    body = b"".join(body_chunks(parts, written))
    return MAGIC + _HEADER.pack(SCHEMA, len(body), zlib.crc32(body)) + body


def decode(data: bytes) -> dict[str, Any]:
    """The body of a state file; StateError(foreign / newer / corrupt) when it cannot be taken back."""
    if not data.startswith(MAGIC):
        raise StateError("foreign", "not a qss-exporter state file")
    start = len(MAGIC) + _HEADER.size
    if len(data) < start:
        raise StateError("corrupt", "the header is cut short")
    schema, length, crc = _HEADER.unpack_from(data, len(MAGIC))
    if schema > SCHEMA:
        raise StateError("newer", f"schema {schema} is newer than this agent's ({SCHEMA}): written by a later version")
    body = memoryview(data)[start:]
    if len(body) != length or zlib.crc32(body) != crc:
        raise StateError("corrupt", "the checksum does not match (a cut or damaged file)")
    try:
        # Arrays come back as tuples: the keys and label sets in the snapshots are tuples and stay usable
        # as such; the parts read the rest as sequences. strict_map_key off: a map key may be any str.
        decoded = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise StateError("corrupt", f"the body does not decode: {error}") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("parts"), dict):
        raise StateError("corrupt", "the body has no parts")
    return decoded


@dataclass(frozen=True, slots=True)
class StateFamilies:
    checkpoints: CounterFamily
    last_checkpoint: GaugeFamily
    checkpoint_seconds: GaugeFamily
    restore: GaugeFamily

    @classmethod
    def register(cls, store: Store) -> StateFamilies:
        families = cls(
            store.counter(
                "zoom_qss_state_checkpoints_total",
                "Pipeline state checkpoints to state.dir, by outcome.",
                ("outcome",),
            ),
            store.gauge(
                "zoom_qss_state_last_checkpoint_timestamp_seconds",
                "Unix time of the last pipeline state checkpoint written to state.dir (0: none yet).",
                (),
            ),
            store.gauge(
                "zoom_qss_state_checkpoint_duration_seconds",
                "Time the last pipeline state checkpoint took: snapshot, serialisation and the synced write.",
                (),
            ),
            store.gauge(
                "zoom_qss_state_restore",
                "1 for what became of the pipeline state file at start (restored, none, or set aside), else 0.",
                ("outcome",),
            ),
        )
        for outcome in CHECKPOINT_OUTCOMES:
            families.checkpoints.inc((outcome,), 0)
        for outcome in RESTORE_OUTCOMES:
            families.restore.set((outcome,), 0)
        families.last_checkpoint.set((), 0)
        families.checkpoint_seconds.set((), 0)
        return families


class StateFile:
    """The state file of one agent: `restore` once before serving, `run` the checkpoints, `save` at stop.

    `parts()` gives the pipeline's stateful parts by name (Pipeline.stateful); `labels` are the
    enrichment label names the labelled parts' snapshots carry.
    """

    def __init__(
        self,
        directory: Path,
        parts: Callable[[], Mapping[str, Stateful]],
        labels: Collection[str],
        interval: float,
        families: StateFamilies,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self._parts = parts
        self._labels = list(labels)
        self.interval = interval
        self._m = families
        self._clock = clock
        self._lock = asyncio.Lock()
        self._lock_file: int | None = None
        self._writing: asyncio.Future[None] | None = None  # the fsync and rename on their thread, until done
        self.usable = False  # the directory is ours and writable (open() succeeded)

    # ------------------------------------------------------------------------------------ start

    def open(self) -> bool:
        """Create the directory (0700) and take its lock; False (and a warning) when it cannot be used."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            log.warning(
                "state.dir: cannot use %s (%s); the pipeline state is kept in memory only, and a restart forgets it",
                self.directory,
                error.strerror or type(error).__name__,
            )
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            log.warning(
                "state.dir: %s is in use by another agent (one agent per directory); this one keeps its "
                "pipeline state in memory only",
                self.directory,
            )
            return False
        self._lock_file = descriptor
        self.usable = True
        return True

    def close(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the lock
            self._lock_file = None

    def read(self) -> tuple[str, dict[str, Any] | None]:
        """(outcome, body): the file decoded, or why not; a bad file is set aside. Blocking: run on a thread."""
        leftover = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()  # a write the process did not live to rename: the file before it is whole
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return "none", None
        except OSError as error:
            log.warning("state.dir: cannot read %s (%s); starting empty", self.path, error.strerror)
            return "unreadable", None
        try:
            return "restored", decode(data)
        except StateError as error:
            aside = self._set_aside(error.reason)
            log.warning(
                "state.dir: %s is %s (%s); it was set aside as %s and the agent starts empty",
                self.path,
                error.reason,
                error,
                aside.name if aside is not None else "(could not rename it)",
            )
            return error.reason, None

    def _set_aside(self, reason: str) -> Path | None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.{reason}-{stamp}")
        counter = 1
        while aside.exists():
            counter += 1
            aside = self.path.with_name(f"{self.path.name}.{reason}-{stamp}-{counter}")
        try:
            os.replace(self.path, aside)
        except OSError:
            return None
        return aside

    async def restore(self) -> str:
        """Read the file (on a thread) and give each part its snapshot (on the loop); the outcome."""
        started = time.monotonic()
        # Decoding and restoring make millions of objects that live on, none of them in a cycle: the
        # collector's passes over them only cost (measured ~x1.5 at start-up with 50k participants).
        collecting = gc.isenabled()
        gc.disable()
        try:
            outcome, body = await asyncio.to_thread(self.read)
            if body is not None:
                outcome = self.apply(body)
        finally:
            if collecting:
                gc.enable()
        if outcome == "none":
            log.info("state.dir: no saved pipeline state in %s; starting empty", self.directory)
        if body is not None and outcome == "restored":
            log.info(
                "state.dir: pipeline state of %s restored in %.2f s",
                _age(self._clock() - float(body.get("written", 0.0))),
                time.monotonic() - started,
                extra={"fields": {"parts": sorted(body["parts"])}},
            )
        for each in RESTORE_OUTCOMES:
            self._m.restore.set((each,), 1.0 if each == outcome else 0.0)
        return outcome

    def apply(self, body: Mapping[str, Any]) -> str:
        """Give each part its snapshot from a decoded body; a part that does not take it makes the file corrupt."""
        saved: Mapping[str, Any] = body["parts"]
        parts = self._parts()
        enrichment = saved.get("enrichment")
        same_labels = isinstance(enrichment, dict) and list(enrichment.get("labels", ())) == self._labels
        failed: list[str] = []
        for name, part in parts.items():
            data = saved.get(name)
            if data is None:
                continue
            if name in LABELLED_PARTS and not same_labels:
                log.warning("state.dir: the enrichment labels changed since the state was saved; %s not restored", name)
                continue
            try:
                part.restore(data)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
                failed.append(name)
                log.warning("state.dir: the saved %s does not restore (%s: %s)", name, type(error).__name__, error)
        if failed:
            aside = self._set_aside("corrupt")
            log.warning(
                "state.dir: %s set aside as %s; the parts that restored are kept",
                self.path,
                aside.name if aside is not None else "(could not rename it)",
            )
            return "corrupt"
        return "restored"

    # ------------------------------------------------------------------------------------ checkpoints

    async def run(self) -> None:
        """Checkpoint every `interval` seconds until cancelled (a background task of the agent)."""
        while True:
            await asyncio.sleep(self.interval)
            await self.save()

    async def save(self, *, paced: bool = True) -> bool:
        """Snapshot the parts and serialise them on the event loop, in slices between which it serves
        events (`paced`: as long as each slice; at shutdown, when no event can come, not at all); then
        fsync and rename on a thread. True when written.

        The thread's part runs to its end even when the caller is cancelled (a thread cannot be
        stopped), and the next save waits for it first, so that files are renamed in the order their
        snapshots were taken.
        """
        async with self._lock:
            if self._writing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writing)
            started = time.monotonic()
            written = self._clock()
            snapshot = {name: part.snapshot() for name, part in self._parts().items()}
            temporary = self.path.with_name(self.path.name + ".tmp")
            try:
                file = await self._write(snapshot, written, temporary, paced)
                self._writing = asyncio.ensure_future(asyncio.to_thread(self._commit, file, temporary))
                await asyncio.shield(self._writing)
            except (OSError, ValueError, TypeError, OverflowError) as error:
                self._m.checkpoints.inc(("failed",))
                log.warning("state.dir: checkpoint to %s failed: %s", self.path, error)
                return False
            self._m.checkpoints.inc(("written",))
            self._m.last_checkpoint.set((), written)
            self._m.checkpoint_seconds.set((), time.monotonic() - started)
            return True

    async def _write(self, snapshot: Mapping[str, Any], written: float, temporary: Path, paced: bool) -> BinaryIO:
        """The file, unsynced, at `temporary`; the event loop gets its turn every SLICE_SECONDS."""
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        file = os.fdopen(descriptor, "wb")
        try:
            file.write(MAGIC + _HEADER.pack(SCHEMA, 0, 0))
            length = crc = 0
            buffer = bytearray()
            turn = time.perf_counter()
            for chunk in itertools.chain(body_chunks(snapshot, written), [b""]):
                buffer += chunk
                if len(buffer) >= _FLUSH_BYTES or not chunk:
                    length += len(buffer)
                    crc = zlib.crc32(buffer, crc)
                    # On a thread: a write waits when the kernel throttles a disk that is behind.
                    await asyncio.to_thread(file.write, bytes(buffer))
                    buffer.clear()
                packing = time.perf_counter() - turn
                if packing >= SLICE_SECONDS:
                    await asyncio.sleep(packing if paced else 0)
                    turn = time.perf_counter()
            file.seek(len(MAGIC))
            file.write(_HEADER.pack(SCHEMA, length, crc))
            return file
        except BaseException:  # cancelled at shutdown, or the disk is full: the previous file stays
            file.close()
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _commit(self, file: BinaryIO, temporary: Path) -> None:
        """On a thread: sync the file, rename it over the previous one, sync the directory."""
        try:
            with file:
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power loss
        finally:
            os.close(directory)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
