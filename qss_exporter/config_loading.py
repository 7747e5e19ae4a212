"""The raw side of configuration: YAML parsing, `${VAR}` interpolation, `*_file` secrets, error wording.

Knows nothing of the config models (config.py passes its root model in); every function returns
problems as `(key path, message)` pairs instead of raising, so that all of them reach the operator.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from qss_exporter.redaction import redact_urls_in

__all__ = [
    "PROBLEMS_ERROR",
    "SECRET_EMPTY_ERROR",
    "Loc",
    "Problem",
    "describe",
    "document_order",
    "interpolate_tree",
    "parse_yaml",
    "problems_error",
    "render_path",
    "resolve_secret_files",
    "validation_problems",
]

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

# Custom pydantic error types: PROBLEMS_ERROR carries one or more (sub-path, message) pairs in its
# context so a cross-field validator can report every problem it finds, each at its own key.
PROBLEMS_ERROR = "config_problems"
SECRET_EMPTY_ERROR = "secret_empty"


def problems_error(problems: Sequence[Problem]) -> PydanticCustomError:
    """A validator error holding `problems`, each relative to the key being validated."""
    text = "; ".join(f"{'.'.join(map(str, loc)) or '(here)'}: {message}" for loc, message in problems)
    return PydanticCustomError(PROBLEMS_ERROR, "{text}", {"text": text, "problems": tuple(problems)})


# ---------------------------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which plain YAML silently resolves to the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may legitimately be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str) -> tuple[Any, str | None]:
    """Parse YAML text; return `(data, None)` or `(None, "source:line:column: problem")`."""
    try:
        return yaml.load(text, Loader=_StrictLoader), None  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its position: the snippet PyYAML would add could show a secret.
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        return None, f"{where}: {exc.problem or exc.context}"
    except yaml.YAMLError as exc:
        return None, f"{source}: {exc}"


# ------------------------------------------------------------------------------------- interpolation

# `$${` is an escaped literal `${`; `${NAME}` or `${NAME:-default}` a reference; any other `${` is an error.
_TOKEN = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")
_REFERENCE_HELP = "use ${VAR} or ${VAR:-default}; write $${ for a literal ${"


def _is_secret(loc: Loc, secret_keys: Collection[str]) -> bool:
    return any(isinstance(element, str) and element in secret_keys for element in loc)


def _interpolate_string(
    text: str, loc: Loc, environ: Mapping[str, str], secret: bool, problems: list[Problem]
) -> tuple[str, tuple[str, ...]]:
    names: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group("name"), match.group("default")
        if name is None:
            end = text.find("}", match.start())
            snippet = text[match.start() : end + 1 if end >= 0 else match.start() + 30]
            shown = "" if secret else f" {snippet!r}"
            problems.append((loc, f"invalid reference{shown} at character {match.start()} ({_REFERENCE_HELP})"))
            return match.group(0)
        names.append(name)
        value = environ.get(name)
        if default is not None:
            return value or default
        if value is None:
            problems.append((loc, f"${{{name}}} is not set (give ${{{name}:-default}} for a default)"))
            # Left as written so the rest of its section still validates; the config is rejected anyway.
            return match.group(0)
        return value

    return _TOKEN.sub(substitute, text), tuple(names)


def interpolate_tree(
    node: Any, environ: Mapping[str, str], secret_keys: Collection[str], loc: Loc = ()
) -> tuple[Any, list[Problem], dict[Loc, tuple[str, ...]]]:
    """Copy `node` with `${...}` replaced in every string value (never in keys).

    Returns the copy, the problems, and for each interpolated string the variables it referenced,
    so that a later "empty" error can say which variable made it empty.
    """
    problems: list[Problem] = []
    references: dict[Loc, tuple[str, ...]] = {}

    def walk(value: Any, here: Loc) -> Any:
        if isinstance(value, str):
            result, names = _interpolate_string(value, here, environ, _is_secret(here, secret_keys), problems)
            if names:
                references[here] = names
            return result
        if isinstance(value, Mapping):
            return {key: walk(item, (*here, key)) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item, (*here, index)) for index, item in enumerate(value)]
        return value

    return walk(node, loc), problems, references


# ------------------------------------------------------------------------------------ *_file secrets


def _read_secret_file(path: Path) -> tuple[list[str], str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [], f"cannot read {path}: {exc.strerror or type(exc).__name__}"
    except UnicodeDecodeError:
        return [], f"cannot read {path}: not UTF-8 text"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return [], f"{path} holds no secret (the file is empty)"
    return lines, None


def resolve_secret_files(
    node: Any, base_dir: Path, multi_keys: Collection[str], single_keys: Collection[str], loc: Loc = ()
) -> tuple[list[Problem], set[Loc]]:
    """Read every `KEY_file` (KEY in `multi_keys` or `single_keys`) in place into `KEY`.

    A multi key takes one secret per non-blank line (rotation); a single key takes exactly one.
    `KEY_file` is replaced by its resolved path. Returns the problems and the key paths they already
    explain, so that the follow-on "missing secret" errors are not reported on top of them.
    """
    problems: list[Problem] = []
    explained: set[Loc] = set()
    if isinstance(node, list):
        for index, item in enumerate(node):
            more, covered = resolve_secret_files(item, base_dir, multi_keys, single_keys, (*loc, index))
            problems += more
            explained |= covered
        return problems, explained
    if not isinstance(node, MutableMapping):
        return problems, explained
    for key in (*multi_keys, *single_keys):
        file_key = f"{key}_file"
        if node.get(file_key) is None:  # absent, or `null` as in config.example.yaml
            continue
        file_loc = (*loc, file_key)
        if key in node:
            problems.append((file_loc, f"give {key} or {file_key}, not both"))
            explained.add(file_loc)
            del node[file_key]
            continue
        explained.add((*loc, key))  # unless read below, the secret is missing *because of* this key
        if node[file_key] == "":
            problems.append((file_loc, "must not be empty"))
            continue
        if not isinstance(node[file_key], str):
            continue  # pydantic reports the bad path value
        path = base_dir / node[file_key]
        node[file_key] = str(path)
        lines, problem = _read_secret_file(path)
        if problem is None and key in single_keys and len(lines) > 1:
            problem = f"{path} holds {len(lines)} lines; {file_key} takes one secret"
        if problem is not None:
            problems.append((file_loc, problem))
            explained.add(file_loc)
            continue
        explained.discard((*loc, key))
        node[key] = lines if key in multi_keys else lines[0]
    for key, value in node.items():
        if isinstance(value, Mapping | list):
            more, covered = resolve_secret_files(value, base_dir, multi_keys, single_keys, (*loc, key))
            problems += more
            explained |= covered
    return problems, explained


# ------------------------------------------------------------------------------------ error wording

_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "path_type": "expected a file path",
    "finite_number": "must be a finite number",
}
_ABSENT = object()


def describe(value: Any, secret: bool = False) -> str:
    """A short, safe rendering of a config value for an error message (`<secret>` for secrets)."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if secret:
        return "<secret>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        value = redact_urls_in(value)  # a URL's user-info may hold a password
        return repr(value if len(value) <= 60 else f"{value[:57]}...")
    return repr(value)


def render_path(loc: Loc, raw: Any) -> tuple[str, Loc]:
    """Render `loc` as `accounts[1].webhook_secret_token`, cut where the raw tree held a scalar.

    The cut undoes the model's own wrapping (a single secret string becomes a one-item list), so
    the path names what the operator wrote. Returns the rendering and the cut loc.
    """
    text = ""
    node = raw
    for depth, element in enumerate(loc):
        if node is not _ABSENT and not isinstance(node, Mapping | list):
            return text, loc[:depth]
        if isinstance(element, int) and not isinstance(node, Mapping):
            text += f"[{element}]"
            node = node[element] if isinstance(node, list) and element < len(node) else _ABSENT
        else:
            text += f".{element}" if text else str(element)
            node = node.get(element, _ABSENT) if isinstance(node, Mapping) else _ABSENT
    return text or "top level", loc


def document_order(loc: Loc, raw: Any) -> tuple[int, ...]:
    """A sort key placing `loc` where it appears in the raw tree; keys it lacks sort last."""
    order: list[int] = []
    node = raw
    for element in loc:
        if isinstance(node, Mapping) and element in node:
            order.append(list(node).index(element))
            node = node[element]
        elif isinstance(node, list) and isinstance(element, int) and element < len(node):
            order.append(element)
            node = node[element]
        else:
            order.append(1 << 30)
            node = _ABSENT
    return tuple(order)


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for element in loc:
        if isinstance(element, int):
            continue  # a list index: stay on the list's item model
        field = model.model_fields.get(element) if model is not None else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        if (model := _inner_model(argument)) is not None:
            return model
    return None


def _message(error: ErrorDetails, root: type[BaseModel], secret: bool) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    got = f", got {describe(error['input'], secret)}"
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        model = _model_at(root, error["loc"][:-1])
        allowed = ", ".join(model.model_fields) if model is not None else ""
        return f"unknown key (allowed: {allowed})"
    if kind == "string_type" and isinstance(error["input"], int | float) and not secret:
        return f"expected a string{got} (put it in quotes)"
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}{got}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
        bound = next(key for key in words if key in ctx)
        return f"must be {words[bound]} {ctx[bound]}{got}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"needs at least {minimum} items"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"] + ("" if secret else got)


def validation_problems(
    error: ValidationError,
    root: type[BaseModel],
    raw: Any,
    secret_keys: Collection[str],
    references: Mapping[Loc, tuple[str, ...]],
) -> list[Problem]:
    """Turn pydantic's errors into `(loc, message)` problems worded for an operator.

    `raw` is the data that was validated (paths are cut to what it holds), `references` the
    interpolated variables by path (see `interpolate_tree`).
    """
    problems: list[Problem] = []
    for details in error.errors():
        loc = details["loc"]
        if loc and loc[-1] == "[key]":  # a mapping key that failed validation: name the key itself
            loc = loc[:-1]
        if details["type"] == PROBLEMS_ERROR:
            problems += [(render_path((*loc, *sub), raw)[1], text) for sub, text in details["ctx"]["problems"]]
            continue
        if details["type"] == "invalid_key":
            problems.append((loc[:-1], f"key {describe(details['input'])} is not a string"))
            continue
        if details["type"] == "too_short" and len(details["input"]) >= details["ctx"]["min_length"]:
            continue  # pydantic counts only the valid items; the invalid ones are reported already
        _, loc = render_path(loc, raw)
        secret = _is_secret(loc, secret_keys)
        if details["type"] == SECRET_EMPTY_ERROR and loc in references:
            names = ", ".join(f"${{{name}}}" for name in references[loc])
            problems.append((loc, f"empty after interpolating {names}"))
        elif details["type"] == SECRET_EMPTY_ERROR:
            problems.append((loc, "must not be empty"))
        else:
            problems.append((loc, _message(details, root, secret)))
    return problems
