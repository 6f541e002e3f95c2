"""Experiment files: a command's options read from a YAML file (``umt train --config exp.yaml``).

The file is a mapping from the command's long option names (``batch-size`` or ``batch_size``)
to values. A multi-value option (``--set``) takes a list or a mapping (``set: {dropout: 0.3}``
is ``--set dropout=0.3``); a list given to a single-value option is joined with commas, which
is how ``--seeds 1,2,3`` and ``--systems`` take several values. Every scalar is read as the text
it is written as and converted by the option's own type, exactly as the command line would
(``lr: 5e-5`` is a float, ``dataset: no`` the name ``no``, ``resume: yes`` true). Paths are
taken relative to the current directory, as on the command line, not to the file, so that a
value means the same in the file and as a flag.

Precedence: the command line, then the file, then the option's default. The file fills click's
``ctx.default_map``, so an option it gives has the source ``DEFAULT_MAP``: it counts as given
(``cli._given``), and so overrides a recipe's setting as a typed flag would. A multi-value
option wired with :func:`file_checked` adds the command line's values after the file's (for
``--set``: a key given in both takes the command line's value); without it, as for a single
value, the command line replaces the file's value.

Every mistake is one :class:`ConfigError` line naming ``file:line``: a YAML syntax error, an
unknown key (with a did-you-mean), a key given twice, a value the option's type refuses, a
value :func:`file_checked`'s parser refuses. The file is read with PyYAML's safe loader only
(plain data; a tag that would build an object is refused) and capped at :data:`MAX_BYTES`.

A command takes ``--config`` with one parameter, and an option its body parses further (``--set``,
``--seeds``) names its parser, so that the file's mistakes in it name their lines too::

    config: Path | None = experiment_file.config_option()
    set_: list[str] = typer.Option([], "--set", callback=experiment_file.file_checked(parse_overrides))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from umt.pipeline.errors import ConfigError, did_you_mean
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig

if TYPE_CHECKING:
    from typer.core import TyperOption

#: The largest experiment file read: an experiment is a few dozen lines.
MAX_BYTES = 1 << 20
#: Where the loaded :class:`ExperimentFile` is kept in ``ctx.meta`` for :func:`file_checked`.
META_KEY = "umt.experiment_file"
#: The option through which a command takes ModelConfig / TrainConfig fields (``--set key=value``).
SETTINGS_OPTION = "set"
_SETTINGS = frozenset(f.name for config in (ModelConfig, TrainConfig) for f in fields(config))
_NULL = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class FileValue:
    """One option as the file gives it: the value click receives and the line of each entry.

    ``value`` is the option's converted value (a sequence for a multi-value option); ``texts``
    are its entries as the command line would spell them, one per line of ``lines``.
    """

    value: Any
    texts: tuple[str, ...]
    lines: tuple[int, ...]


@dataclass(frozen=True)
class ExperimentFile:
    """A loaded experiment file: its path and, by click parameter name, the options it gives."""

    path: Path
    values: dict[str, FileValue]

    def where(self, name: str, entry: int = 0) -> str:
        """``file:line`` of entry ``entry`` of option ``name``, for error messages."""
        return f"{self.path}:{self.values[name].lines[entry]}"


def config_option() -> Any:
    """The ``--config FILE`` option of a command: its options from an experiment file (this module)."""
    return typer.Option(
        None,
        "--config",
        metavar="FILE",
        is_eager=True,
        callback=_apply,
        show_default=False,
        help="Experiment file (YAML): any of this command's options by long name, e.g. `lr: 5e-5`, "
        '`set: {dropout: 0.3}` (docs/training.md, "Experiment files"); options typed on the command line win.',
    )


def file_checked(parse: Callable[[Any], object]) -> Callable[..., Any]:
    """An option callback: ``parse`` checks what the experiment file gave the option, naming its line.

    ``parse`` is what the command later applies to the option's value (``parse_seeds``,
    ``parse_overrides``); called here on the file's part alone, its ConfigError gets the file's
    line. For a multi-value option given in both places, the value is the file's entries followed
    by the command line's.
    """

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        loaded: ExperimentFile | None = ctx.meta.get(META_KEY)
        if loaded is None or param.name not in loaded.values:
            return value
        given = loaded.values[param.name]
        entries = [[text] for text in given.texts] if param.multiple else [given.value]
        for index, entry in enumerate(entries):
            try:
                parse(entry)
            except ConfigError as e:
                raise ConfigError(f"{loaded.where(param.name, index)}: {e}") from None
        if param.multiple and _typed(ctx, param.name):
            return (*given.value, *value)
        return value

    return callback


def load_experiment_file(path: Path, ctx: typer.Context, skip: str = "") -> ExperimentFile:
    """The options ``path`` gives the command of ``ctx``, checked and converted by their types.

    ``skip`` is the parameter a file may not set (the ``--config`` option itself).
    """
    options = _options(ctx.command, skip)
    root = _compose(path)
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:{_line(root)}: expected a mapping of option names to values, got {_kind(root)}")
    values: dict[str, FileValue] = {}
    first_line: dict[str, int] = {}
    for key_node, value_node in root.value:
        option = _option_for(path, key_node, options, _command_name(ctx))
        if option.name in first_line:
            raise ConfigError(
                f"{path}:{_line(key_node)}: {key_node.value!r} is given twice (first on line {first_line[option.name]})"
            )
        first_line[option.name] = _line(key_node)
        values[option.name] = _file_value(path, ctx, option, key_node, value_node)
    return ExperimentFile(path, values)


def _apply(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """The ``--config`` callback (eager: it runs before the other options are read)."""
    if value is not None:
        loaded = load_experiment_file(value, ctx, skip=param.name)
        ctx.meta[META_KEY] = loaded
        ctx.default_map = {**(ctx.default_map or {}), **{name: v.value for name, v in loaded.values.items()}}
    return value


def _read_text(path: Path) -> str:
    """The file's text: it must exist, be a file, hold at most :data:`MAX_BYTES` and be UTF-8."""
    if not path.exists():
        raise ConfigError(f"experiment file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"experiment file {path} is not a file")
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ConfigError(f"experiment file {path} is larger than {MAX_BYTES // (1 << 20)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None


def _compose(path: Path) -> yaml.Node:
    """The file's YAML document as nodes (they carry the lines), once it loads as ``yaml.safe_load``
    would load it: the safe loader's tags only, so nothing in it can build an object."""
    loader = yaml.SafeLoader(_read_text(path))
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(f"experiment file {path} is empty: expected lines of option: value")
        loader.construct_document(root)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = ", ".join(part for part in (e.context, e.problem) if part)
        raise ConfigError(f"{path}:{mark.line + 1}: not valid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    finally:
        loader.dispose()
    return root


def _options(command: Any, skip: str) -> dict[str, TyperOption]:
    """The command's options by long name without its dashes (``batch-size``)."""
    return {
        opt[2:]: param
        for param in command.params
        if param.param_type_name == "option" and param.name != skip
        for opt in param.opts
        if opt.startswith("--")
    }


def _option_for(path: Path, key_node: yaml.Node, options: dict[str, TyperOption], command: str) -> TyperOption:
    """The option a top-level key names (``_`` and ``-`` alike), or the error naming the key's line.

    The key is a scalar: the safe loader refuses a list or mapping as a key (it is unhashable)."""
    key = key_node.value
    option = options.get(key.replace("_", "-"))
    if option is None:
        raise ConfigError(f"{path}:{_line(key_node)}: unknown key {key!r} for {command}{_hint(key, options)}")
    return option


def _hint(key: str, options: dict[str, TyperOption]) -> str:
    """What an unknown key may have meant: a setting that goes under ``set:``, the closest option, or
    the list of them."""
    if SETTINGS_OPTION in options and key.replace("-", "_") in _SETTINGS:
        return f" (a model or training setting: give it under {SETTINGS_OPTION}:, as {SETTINGS_OPTION}: {{{key}: ...}})"
    return did_you_mean(key, options) or f"; its keys: {', '.join(sorted(options))}"


def _file_value(path: Path, ctx: typer.Context, option: TyperOption, key_node: yaml.Node, node: yaml.Node) -> FileValue:
    """What ``node`` gives ``option``, converted by the option's type (its error names the line)."""
    key = key_node.value
    entries = _entries(path, key, node, option.multiple)
    if not option.multiple:
        if not entries:
            raise ConfigError(f"{path}:{_line(node)}: {key}: expected a value, got an empty list")
        entries = [(",".join(text for text, _ in entries), entries[0][1])]
    texts = tuple(text for text, _ in entries)
    lines = tuple(line for _, line in entries) or (_line(key_node),)
    raw = list(texts) if option.multiple else texts[0]
    try:  # the option's own conversion, as for a typed value (a callback sees it before the file is in place)
        value = option.process_value(ctx, raw)
    except typer.BadParameter as e:
        raise ConfigError(f"{path}:{lines[0]}: {key} {raw!r}: {e.message.rstrip('.')}") from None
    return FileValue(value, texts, lines)


def _entries(path: Path, key: str, node: yaml.Node, multiple: bool) -> list[tuple[str, int]]:
    """``node`` as command-line words with their lines: a scalar is one, a list one per item, and
    for a multi-value option a mapping one ``name=value`` per entry."""
    if isinstance(node, yaml.SequenceNode):
        return [(_scalar(path, key, item), _line(item)) for item in node.value]
    if isinstance(node, yaml.MappingNode) and multiple:
        return [(f"{_scalar(path, key, k)}={_scalar(path, key, v)}", _line(k)) for k, v in node.value]
    return [(_scalar(path, key, node), _line(node))]


def _scalar(path: Path, key: str, node: yaml.Node) -> str:
    """A plain value as written (the option's type converts it), or the error naming its line."""
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{path}:{_line(node)}: {key}: expected a plain value, got {_kind(node)}")
    if node.tag == _NULL:
        raise ConfigError(f"{path}:{_line(node)}: {key} has no value (leave the key out for the default)")
    return node.value


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line."""
    return getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(node.value)


def _command_name(ctx: typer.Context) -> str:
    """``umt train``: the command as the user types it, whatever the program was started as."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["umt", *reversed(names)])
