"""`mesh completion bash|zsh`: a shell completion script generated from the command's own
argparse parser, so that a command, action or option added later is completed without
anyone editing a script.

    source <(mesh completion bash)      in ~/.bashrc
    source <(mesh completion zsh)       in ~/.zshrc, after compinit (zsh runs the bash function
                                        through its bashcompinit)

Commands, actions, options and choices are completed from the parser; module names (where a
command takes one and asks the coordinator) from `mesh status --names` at the moment of
completion; paths by the shell.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mesh.cli._common import EXIT_OK, Commands

MODULE_NAMES = "@modules"
"""A positional completed with the mesh's module names."""
FILES = "@files"
NOTHING = "-"
MODULE_DESTS = frozenset({"name", "module"})


@dataclass(frozen=True)
class Level:
    """What can follow one command path (`""`, `"tenant"`, `"tenant enable"`)."""

    path: str
    subcommands: list[str]
    options: list[str]
    value_options: dict[str, str]
    """Options that take a value, with how to complete it (choices joined by '|', FILES or NOTHING)."""
    positionals: list[str]
    """How to complete each positional in turn (choices joined by '|', MODULE_NAMES, FILES or NOTHING)."""


def register(commands: Commands) -> None:
    """Add `completion` to the `mesh` command; call it after every other command is registered.

    Args:
        commands: The `mesh` command's subcommands, which the script is generated from.
    """
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script: source <(mesh completion bash)",
        description="Print a completion script for bash or zsh, generated from mesh's own commands. "
        "bash: add `source <(mesh completion bash)` to ~/.bashrc. zsh: add `source <(mesh completion zsh)` "
        "to ~/.zshrc after compinit.",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(run=lambda args: _print_script(args.shell, commands))


def _print_script(shell: str, commands: Commands) -> int:
    root = argparse.ArgumentParser(prog="mesh", add_help=True)
    root.add_argument("--version", action="version")
    levels = list(_levels("", root, commands))
    print(script(shell, levels))
    return EXIT_OK


def _levels(path: str, parser: argparse.ArgumentParser, sub: Commands | None) -> Iterator[Level]:
    """The level of `path` and every level below it."""
    options: list[str] = []
    value_options: dict[str, str] = {}
    positionals: list[str] = []
    has_coordinator = any("--coordinator" in action.option_strings for action in parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub = action
            continue
        if action.option_strings:
            if action.help != argparse.SUPPRESS:  # hidden: not offered, but its value is still skipped
                options.extend(action.option_strings)
            if action.nargs != 0:
                for option in action.option_strings:
                    value_options[option] = _values(action)
        else:
            module_name = action.dest in MODULE_DESTS and (has_coordinator or action.metavar == "MODULE")
            positionals.append(MODULE_NAMES if module_name else _values(action))
    yield Level(path, list(sub.choices) if sub is not None else [], options, value_options, positionals)
    if sub is not None:
        for name, child in sub.choices.items():
            yield from _levels(f"{path} {name}".strip(), child, None)


def _values(action: argparse.Action) -> str:
    if action.choices is not None:
        return "|".join(str(choice) for choice in action.choices)
    if action.type is Path:
        return FILES
    return NOTHING


def script(shell: str, levels: list[Level]) -> str:
    """The completion script for `shell` ("bash" or "zsh") of the command levels given."""
    function = _BASH_FUNCTION.replace("@LEVELS@", _level_cases(levels)).replace("@VALUES@", _value_cases(levels))
    if shell == "zsh":
        return _ZSH_PREAMBLE + function
    return _BASH_PREAMBLE + function


def _level_cases(levels: list[Level]) -> str:
    cases = []
    for level in levels:
        cases.append(
            f"        {shlex.quote(level.path)})\n"
            f"            _mesh_sub={shlex.quote(' '.join(level.subcommands))}\n"
            f"            _mesh_opts={shlex.quote(' '.join(level.options))}\n"
            f"            _mesh_valopts={shlex.quote(' '.join(level.value_options))}\n"
            f"            _mesh_pos={shlex.quote(' '.join(level.positionals))} ;;"
        )
    return "\n".join(cases)


def _value_cases(levels: list[Level]) -> str:
    cases = []
    for level in levels:
        for option, values in level.value_options.items():
            if values != NOTHING:
                pattern = shlex.quote(f"{level.path}|{option}")
                cases.append(f"        {pattern}) _mesh_complete_spec {shlex.quote(values)} ;;")
    return "\n".join(cases)


_BASH_PREAMBLE = "# bash completion for mesh (generated by `mesh completion bash`): source <(mesh completion bash)\n"
_ZSH_PREAMBLE = (
    "# zsh completion for mesh (generated by `mesh completion zsh`): source <(mesh completion zsh), after compinit\n"
    "autoload -U +X bashcompinit && bashcompinit\n"
)
# Plain POSIX-ish shell that bash and zsh's bashcompinit both run: no `path` variable (zsh ties
# it to PATH), no associative arrays.
_BASH_FUNCTION = r"""
_mesh_level() {
    case "$1" in
@LEVELS@
        *) _mesh_sub=""; _mesh_opts=""; _mesh_valopts=""; _mesh_pos="" ;;
    esac
}

_mesh_complete_spec() {
    case "$1" in
        @modules) COMPREPLY=($(compgen -W "$(mesh status --names 2>/dev/null)" -- "$_mesh_cur")) ;;
        @files) COMPREPLY=($(compgen -f -- "$_mesh_cur")) ;;
        -|"") COMPREPLY=() ;;
        *) COMPREPLY=($(compgen -W "$(echo "$1" | tr '|' ' ')" -- "$_mesh_cur")) ;;
    esac
}

_mesh_option_values() {
    case "$1" in
@VALUES@
        *) COMPREPLY=() ;;
    esac
}

_mesh_complete() {
    local _mesh_cur="${COMP_WORDS[COMP_CWORD]}" _mesh_at="" _mesh_word="" _mesh_skip="" _mesh_count=0 _mesh_i
    local _mesh_sub _mesh_opts _mesh_valopts _mesh_pos
    _mesh_level ""
    for ((_mesh_i = 1; _mesh_i < COMP_CWORD; _mesh_i++)); do
        _mesh_word="${COMP_WORDS[_mesh_i]}"
        if [[ -n $_mesh_skip ]]; then
            _mesh_skip=""
            continue
        fi
        case "$_mesh_word" in
            --*=*) continue ;;
            -*)
                [[ " $_mesh_valopts " == *" $_mesh_word "* ]] && _mesh_skip=1
                continue ;;
        esac
        if [[ " $_mesh_sub " == *" $_mesh_word "* ]]; then
            _mesh_at="${_mesh_at:+$_mesh_at }$_mesh_word"
            _mesh_count=0
            _mesh_level "$_mesh_at"
        else
            _mesh_count=$((_mesh_count + 1))
        fi
    done
    COMPREPLY=()
    if [[ -n $_mesh_skip ]]; then
        _mesh_option_values "$_mesh_at|${COMP_WORDS[COMP_CWORD-1]}"
    elif [[ $_mesh_cur == -* ]]; then
        COMPREPLY=($(compgen -W "$_mesh_opts" -- "$_mesh_cur"))
    elif [[ -n $_mesh_sub ]]; then
        COMPREPLY=($(compgen -W "$_mesh_sub" -- "$_mesh_cur"))
    else
        # The trailing space makes cut print nothing past the last positional (not the whole line).
        _mesh_complete_spec "$(echo "$_mesh_pos " | cut -d' ' -f$((_mesh_count + 1)))"
    fi
}

complete -F _mesh_complete mesh
"""
