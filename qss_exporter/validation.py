"""One validation of a configuration file, shared by `check-config`, start-up and (later) reload.

`load_config` (config.py) checks the file against its schema. `validate` adds everything the agent
would still refuse when it builds its parts from a valid file, with the same `key.path: problem`
lines and never a traceback: bucket overrides of families that do not exist, TLS files the OTLP
exporters cannot read (set in the file or by OTEL_* variables), the metrics listener's web
configuration file (exporter-toolkit format). It also returns the warnings the
agent would log at start-up without refusing: OTEL_* variables it ignores, a poller state directory
it cannot write (progress then kept in memory only). `load_checked` is both, for callers with a path.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qss_exporter.catalogue import DEFAULT_BUCKETS
from qss_exporter.config import Config, load_config
from qss_exporter.errors import ConfigError
from qss_exporter.outputs.otlp_settings import build_resource, resolve_settings, tls_problems
from qss_exporter.server.webconfig import load_web_config
from qss_exporter.state import FILE_NAME

__all__ = ["Checked", "load_checked", "validate"]


@dataclass(frozen=True, slots=True)
class Checked:
    """A configuration that start-up will accept, and what it would warn about."""

    config: Config
    warnings: tuple[str, ...]


def load_checked(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, *, web_config_file: str | None = None
) -> Checked:
    """Read and validate a file completely; raises ConfigError listing every problem (`key.path: problem`).

    `web_config_file` (the `--web.config.file` flag) overrides `listen.metrics_web_config_file`.
    """
    environ = os.environ if environ is None else environ
    config = load_config(path, environ)
    if web_config_file:
        listen = config.listen.model_copy(update={"metrics_web_config_file": web_config_file})
        config = config.model_copy(update={"listen": listen})
    return Checked(config, validate(config, environ, source=str(path)))


def validate(config: Config, environ: Mapping[str, str], source: str = "") -> tuple[str, ...]:
    """Everything start-up would refuse in a schema-valid `config`, raised as one ConfigError; else the warnings."""
    problems = _bucket_problems(config)
    if config.listen.metrics_web_config_file:
        try:
            load_web_config(config.listen.metrics_web_config_file)
        except ConfigError as error:
            problems += error.problems
    warnings: list[str] = []
    otlp = config.otlp
    if otlp.enabled:
        build_resource(otlp, environ, warn=warnings.append)
        for signal in ("metrics", "logs") if otlp.logs.enabled else ("metrics",):
            problems += tls_problems(resolve_settings(otlp, environ, signal, warnings.append))
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)), source=source)
    if config.poller.enabled and (warning := _state_dir_warning(config.poller.state_dir)):
        warnings.append(warning)
    if config.state.dir not in (None, config.poller.state_dir) and "state_dir" in config.poller.model_fields_set:
        warnings.append(
            f"poller.state_dir (deprecated: state.dir holds both) differs from state.dir; the poller keeps its "
            f"progress in {config.poller.state_dir}"
        )
    if config.state.dir is not None and (
        warning := _state_dir_warning(config.state.dir, "state.dir", "the pipeline state would be kept in memory only")
    ):
        warnings.append(warning)
    return tuple(dict.fromkeys(warnings))


def _bucket_problems(config: Config) -> list[str]:
    problems = []
    for name in config.histograms.buckets:
        if name not in DEFAULT_BUCKETS:
            close = difflib.get_close_matches(name, DEFAULT_BUCKETS, n=1)
            hint = f"did you mean {close[0]}?" if close else "the histogram families are listed in docs/metrics.md"
            problems.append(f"histograms.buckets.{name}: no histogram family of that name ({hint})")
    return problems


def _state_dir_warning(
    directory: Path, key: str = "poller.state_dir", outcome: str = "the poller would keep its progress in memory only"
) -> str | None:
    """The poller falls back to memory when it cannot write its state file: say so before it starts.

    Nothing is created here; the nearest existing directory must let the agent create the rest.
    """
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    state = directory / FILE_NAME
    if not existing.is_dir():
        reason = f"{existing} is not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    elif state.exists() and not os.access(state, os.R_OK | os.W_OK):
        reason = f"{state} is not readable and writable"
    else:
        return None
    return f"{key}: cannot write {directory} ({reason}); {outcome}"
