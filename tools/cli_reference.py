"""Sphinx extension: the command line's reference, read from its argparse parser at build time.

Why: the library reference (book/api.md) documents the Python API from its docstrings, but an
engineer who reproduces a table runs ``python -m snip_lib``, whose options lived only in
``--help``. The directive below renders every subcommand of a parser (its description, usage line
and every option, grouped as ``--help`` groups them) as a section of the page, from the same
parser object the command line uses, so the page cannot drift from the code::

    ```{cli-reference} snip_lib.cli:build_parser
    ```

A list of the subcommands, each with its one-line help and linked to its section, comes first.
Each subcommand becomes a section titled ``python -m snip_lib run`` (anchor ``cli-run``), so the
page's table of contents lists them. Backquoted words of a help text (```list```) are shown as
code. Nothing of the parser is executed but its formatting methods.
"""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Option", "Command", "commands_of", "option_label", "usage_of", "command_rst", "load_parser", "setup"]

USAGE_WIDTH = 88  # columns of the usage block on the page (a wide terminal's, not this machine's)
_BACKQUOTED = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_TRAILING_UNDERSCORE = re.compile(r"(\w)_(?=\W|$)")
# an option named in prose (--method): shown as code, which also keeps Sphinx's smart quotes from
# turning its two hyphens into a dash
_OPTION_IN_PROSE = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")


@dataclass(frozen=True)
class Option:
    """One argument of a subcommand as the page shows it: its label and what it means."""

    label: str       # "--sparsity S [S ...]", or "RESULT [RESULT ...]" for a positional
    meaning: str     # the help text, with its choices and default where the text does not name them
    required: bool


@dataclass
class Command:
    """One subcommand: ``name``, its one-line help, description, usage and option groups in order."""

    name: str
    summary: str
    description: str
    usage: str
    groups: list[tuple[str, list[Option]]] = field(default_factory=list)


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    return action.dest.upper()


def option_label(action: argparse.Action) -> str:
    """``--seeds SEED [SEED ...]``: the flags and what follows them, as a user types it."""
    metavar = _metavar(action)
    nargs = action.nargs
    if nargs == 0:
        args = ""
    elif nargs is None or nargs == 1:
        args = metavar
    elif nargs == "?":
        args = f"[{metavar}]"
    elif nargs == "*":
        args = f"[{metavar} ...]"
    elif nargs == "+":
        args = f"{metavar} [{metavar} ...]"
    elif isinstance(nargs, int):
        args = " ".join([metavar] * nargs)
    else:  # argparse.REMAINDER, PARSER: not used by this book's parsers
        raise ValueError(f"option {action.dest!r}: nargs={nargs!r} is not supported; "
                         "allowed: None, '?', '*', '+' or a number")
    flags = ", ".join(action.option_strings)
    return " ".join(part for part in (flags, args) if part)


def _meaning(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    text = formatter._expand_help(action) if action.help else ""  # expands %(default)s as --help does
    notes = []
    if action.choices is not None and not all(str(c) in text for c in action.choices):
        notes.append(f"one of {', '.join(f'`{c}`' for c in action.choices)}")
    default = action.default
    shown = default not in (None, False, argparse.SUPPRESS) and not (isinstance(default, list) and not default)
    if shown and "default" not in text:
        value = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        notes.append(f"default `{value}`")
    if notes:
        text = f"{text} ({'; '.join(notes)})" if text else "; ".join(notes)
    return text.strip()


def usage_of(parser: argparse.ArgumentParser, width: int = USAGE_WIDTH) -> str:
    """The usage lines ``--help`` prints, wrapped at ``width`` columns whatever the terminal."""
    formatter = parser.formatter_class(prog=parser.prog, width=width)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip("\n")


def _subcommands(parser: argparse.ArgumentParser) -> tuple[argparse._SubParsersAction, dict[str, str]] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return action, helps
    return None


def commands_of(parser: argparse.ArgumentParser) -> list[Command]:
    """Every subcommand of ``parser`` with its options, in the order ``--help`` lists them.

    A parser without subcommands gives one ``Command`` named after its ``prog``.
    """
    found = _subcommands(parser)
    if found is None:
        named = {parser.prog: parser}
        helps = {parser.prog: ""}
    else:
        action, helps = found
        named = action.choices
    commands = []
    for name, sub in named.items():
        formatter = sub._get_formatter()
        groups = []
        for group in sub._action_groups:
            options = [Option(option_label(a), _meaning(a, formatter), bool(a.required))
                       for a in group._group_actions if a.help is not argparse.SUPPRESS
                       and not isinstance(a, argparse._HelpAction)]
            if options:
                groups.append((group.title or "options", options))
        commands.append(Command(name, helps.get(name, ""), sub.description or "", usage_of(sub), groups))
    return commands


def _escape(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|")
    return _TRAILING_UNDERSCORE.sub(r"\1\\_", text)  # word_ would be a hyperlink reference


def _inline(text: str) -> str:
    """Help text to reStructuredText: `word` (Markdown-style code in the help) becomes ``word``;
    everything else is escaped, so that a help text cannot turn into markup by accident."""
    parts = _BACKQUOTED.split(text)  # even indices: prose; odd: what was between backquotes
    return "".join(f"``{part}``" if i % 2 else _OPTION_IN_PROSE.sub(r"``\1``", _escape(part))
                   for i, part in enumerate(parts))


def command_rst(command: Command) -> str:
    """The body of a subcommand's section in reStructuredText: description, usage, option tables."""
    lines = []
    if command.description:
        lines += [_inline(command.description), ""]
    lines += [".. code-block:: text", ""] + [f"   {line}" for line in command.usage.splitlines()] + [""]
    for title, options in command.groups:
        lines += [f".. list-table:: {_inline(title[:1].upper() + title[1:])}", "   :header-rows: 1",
                  "   :widths: 35 65", "   :class: cli-options", "",
                  "   * - Option", "     - Meaning"]
        for option in options:
            label = f"``{option.label}``" + (" (required)" if option.required else "")
            lines += [f"   * - {label}", f"     - {_inline(option.meaning) or '(no description)'}"]
        lines.append("")
    return "\n".join(lines)


def load_parser(spec: str) -> argparse.ArgumentParser:
    """``"snip_lib.cli:build_parser"`` -> the parser that function returns."""
    module_name, sep, function = spec.partition(":")
    if not sep or not module_name or not function:
        raise ValueError(f"cli-reference needs 'module:function', not {spec!r}")
    parser = getattr(importlib.import_module(module_name), function)()
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"{spec} returned {type(parser).__name__}, not an argparse.ArgumentParser")
    return parser


def _directive() -> type:
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class CliReference(SphinxDirective):
        """``{cli-reference} module:function``: one section per subcommand of the parser."""

        required_arguments = 1
        has_content = False

        def run(self) -> list[Any]:
            try:
                parser = load_parser(self.arguments[0])
            except (ImportError, AttributeError, ValueError, TypeError) as error:
                raise self.error(f"cli-reference {self.arguments[0]!r}: {error}") from error
            intro = " ".join(_inline(text) for text in (parser.description, parser.epilog) if text)
            sections: list[Any] = []
            if intro:
                paragraph = nodes.container(classes=["cli-intro"])
                self.state.nested_parse(StringList([intro], source=self.get_source_info()[0]),
                                        self.content_offset, paragraph)
                sections.append(paragraph)
            commands = commands_of(parser)
            if len(commands) > 1:
                sections.append(self._overview(parser, commands))
            for command in commands:
                title = f"{parser.prog} {command.name}" if command.name != parser.prog else parser.prog
                section = nodes.section(ids=[nodes.make_id(f"cli-{command.name}")])
                section += nodes.title(text=title)
                body = StringList(command_rst(command).splitlines(), source=self.get_source_info()[0])
                self.state.nested_parse(body, self.content_offset, section)
                sections.append(section)
            return sections

        def _overview(self, parser: argparse.ArgumentParser, commands: list[Command]) -> Any:
            """A list of the commands, each linked to its section, with its one-line help."""
            overview = nodes.bullet_list(classes=["cli-overview"])
            for command in commands:
                link = nodes.reference("", "", refid=nodes.make_id(f"cli-{command.name}"))
                link += nodes.literal(text=f"{parser.prog} {command.name}")
                paragraph = nodes.paragraph("", "", link)
                if command.summary:
                    paragraph += nodes.Text(": ")
                    parsed, _ = self.state.inline_text(_inline(command.summary), self.lineno)
                    paragraph.extend(parsed)
                overview += nodes.list_item("", paragraph)
            return overview

    return CliReference


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("cli-reference", _directive())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
