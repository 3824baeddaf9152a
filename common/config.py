"""fastargs configuration, made strict.

The project's commands are configured the fastargs way (`--config-file X.yaml` plus
`--section.key=value` overrides, later ones winning), but fastargs itself silently
ignores unknown keys in a config file and exits 0 on invalid values. Here a typo
(`training.epochz: 5`) or a bad value is a one-line error before any work starts.
"""
from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from fastargs import get_current_config
from fastargs.exceptions import MissingValueError, ValidationError

from .cli import fail


def flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; dotted keys in the file are accepted as fastargs does."""
    out = {}
    for key, value in tree.items():
        path = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, path + '.'))
        else:
            out[path] = value
    return out


def resolve_config_file(name: str, search_dirs: Iterable[Path] = ()) -> Path:
    """A path as given, else a bare file name looked up in `search_dirs` (e.g. rn50_configs/)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.name == name:
        for folder in search_dirs:
            if (Path(folder) / name).is_file():
                return Path(folder) / name
    where = ', '.join(str(d) for d in search_dirs)
    fail(f'config file {name} not found' + (f' (also looked in {where})' if where else ''))


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        content = json.loads(text) if path.suffix == '.json' else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        fail(f'cannot read config file {path}: {e}'.splitlines()[0])
    if content is None:
        return {}
    if not isinstance(content, dict):
        fail(f'config file {path} must hold a mapping of sections, got {type(content).__name__}')
    return flatten(content)


def check_keys(keys: Iterable[str], known: list[str], source: str) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ''
            fail(f"unknown key '{key}' in {source}{hint}")


def parse_config(description: str, argv: Sequence[str] | None = None,
                 search_dirs: Iterable[Path] = (), sections: Iterable[str] | None = None) -> dict[str, Any]:
    """Parse config files and CLI overrides for every fastargs Section defined so far.

    Returns the validated values as a flat {'section.key': value} dict (defaults filled in),
    plus 'config_files': the files read, in order. `sections` limits it to those sections
    (fastargs keeps one global registry, which other imported modules may add to).
    """
    config = get_current_config()
    config.content.clear()  # a second parse in one process starts from the defaults again
    entries = {path: param for path, param in config.entries.items()
               if sections is None or path[0] in sections}
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=_help_table(entries))
    parser.add_argument('--config-file', '-C', action='append', default=[],
                        help='YAML or JSON config file (can be repeated; a bare name is '
                             'also looked up in ' + ', '.join(map(str, search_dirs)) + ')'
                        if search_dirs else 'YAML or JSON config file (can be repeated)')
    for path in entries:
        name = '.'.join(path)
        parser.add_argument(f'--{name}', dest=name, metavar='VALUE', help=argparse.SUPPRESS)
    args = vars(parser.parse_args(argv))

    files = [resolve_config_file(name, search_dirs) for name in args.pop('config_file')]
    for path in files:
        content = load_config_file(path)
        check_keys(content, ['.'.join(p) for p in entries], str(path))
        config.collect(content)
    config.collect({k: v for k, v in args.items() if v is not None})
    values = validated(config, entries)
    values['config_files'] = [str(path) for path in files]  # not a key: no dot in it
    return values


def validated(config, entries: dict) -> dict[str, Any]:
    values = {}
    for path, param in entries.items():
        name = '.'.join(path)
        try:
            values[name] = config[path]
        except MissingValueError:
            fail(f'--{name} is required: {param.desc}')
        except ValidationError:
            got = config.content.get(path)
            fail(f'--{name}: expected {param.checker.help()}, got {got!r}')
    return values


def _help_table(entries: dict) -> str:
    lines = ['options (set in a config file or as --section.key=value):']
    for path, param in entries.items():
        default = 'required' if param.required else f'default {param.default!r}'
        lines.append(f'  --{".".join(path):32s} {param.desc} [{default}]')
    return '\n'.join(lines)
