"""The README and docs/ cannot drift from the code: every `rlsched` line parses against the CLI, every
`make` target exists, every benchmark script takes the flags shown."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

from rlmodel.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of every command in the file's ```sh blocks: continuations joined,
    comments and a leading `sudo` dropped."""
    out, in_block, pending, start = [], False, "", 0
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() in ("```sh", "```bash", "```console")
            continue
        if not in_block:
            continue
        if not pending:
            start = no
        text = line.rstrip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        command = pending + text
        pending = ""
        words = shlex.split(command, comments=True)
        if not words:
            continue
        if words[0] == "sudo":
            words = words[1:]
        out.append((start, shlex.join(words)))
    return out


_INLINE = re.compile(r"`((?:sudo )?(?:\.venv/bin/)?(?:rlsched|python3?) [^`]+)`")


def inline_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of inline code spans that are complete commands (synopses with [OPTIONAL],
    A|B or ... placeholders are skipped)."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _INLINE.finditer(text):
        command = " ".join(m.group(1).split())
        if any(mark in command for mark in ("[", "|", "...", "<")):
            continue
        words = shlex.split(command)
        out.append((text.count("\n", 0, m.start()) + 1, shlex.join(words[1:] if words[0] == "sudo" else words)))
    return out


ALL = [(path, no, cmd) for path in DOCS for no, cmd in shell_lines(path) + inline_commands(path)]


def _ids(cases):
    return [f"{p.name}:{no}" for p, no, _ in cases]


def test_the_docs_have_commands():
    assert len([c for c in ALL if "rlsched" in c[2]]) > 30


RLSCHED = [c for c in ALL if shlex.split(c[2])[0].endswith("rlsched")]


def _parse(args: list[str]) -> None:
    """Parse `args` down to the leaf command without running it (options typed and checked by click).
    A bare command path (`rlsched load run`, named in prose) only has to exist."""
    path: click.Command | None = main
    for word in args:
        if not isinstance(path, click.Group) or word.startswith("-"):
            break  # options or a leaf command's arguments: parse fully below
        path = path.get_command(click.Context(path), word)
        if path is None:
            raise click.UsageError(f"no such command {word!r}")
    else:
        return  # a bare command path
    ctx = main.make_context("rlsched", list(args))
    cmd = main
    while isinstance(cmd, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 puts them in args
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*ctx.protected_args, *ctx.args]
        if not rest:
            return
        _, sub, sub_args = cmd.resolve_command(ctx, rest)
        assert sub is not None
        ctx = sub.make_context(sub.name, sub_args, parent=ctx)
        cmd = sub


@pytest.mark.parametrize("path,no,command", RLSCHED, ids=_ids(RLSCHED))
def test_every_rlsched_line_parses(path, no, command, monkeypatch):
    for name in [k for k in __import__("os").environ if k.startswith("RLSCHED_")]:
        monkeypatch.delenv(name)
    args = shlex.split(command)[1:]
    # the command ends where the shell takes over: a redirection, a pipe, a background or a next command
    cut = next((i for i, a in enumerate(args) if a in (">", ">>", "|", "&&", ";", "&", "2>")), len(args))
    args = args[:cut]
    try:
        _parse(args)
    except click.exceptions.Exit as exc:  # --help, --version
        assert exc.exit_code == 0
    except click.UsageError as exc:
        pytest.fail(f"{path.name}:{no}: `{command}` does not parse: {exc.format_message()}")


MAKE = [c for c in ALL if shlex.split(c[2])[0] == "make"]


@pytest.mark.parametrize("path,no,command", MAKE, ids=_ids(MAKE))
def test_every_make_target_exists(path, no, command):
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    for word in shlex.split(command)[1:]:
        if "=" not in word:
            assert word in targets, f"{path.name}:{no}: no make target {word!r}"


SCRIPTS = [c for c in ALL if any(w.startswith(("benchmarks/", "host_scripts/")) or w.endswith("app.py")
                                 for w in shlex.split(c[2]))]


@pytest.mark.parametrize("path,no,command", SCRIPTS, ids=_ids(SCRIPTS))
def test_every_script_takes_the_flags_shown(path, no, command):
    words = shlex.split(command)
    i = next(i for i, w in enumerate(words) if w.endswith(".py"))
    script = ROOT / words[i]
    assert script.is_file(), f"{path.name}:{no}: {words[i]} does not exist"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               timeout=120, cwd=ROOT)
    assert help_text.returncode == 0, help_text.stderr
    for flag in (w.split("=")[0] for w in words[i + 1:] if w.startswith("--")):
        assert flag in help_text.stdout, f"{path.name}:{no}: {words[i]} has no option {flag}"


def test_every_doc_link_resolves():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#]+)\)", path.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"
