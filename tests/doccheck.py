"""Reading the snippets, command lines and printed outputs of README.md and docs/*.md.

The documents follow two conventions, so that every output they show can be checked:

- A **console block** is a fenced block (no language, or ``console``) whose lines starting
  with ``$ `` are commands; the lines after one, up to the next ``$`` line, are what it
  prints (standard output and standard error, in order). A last line ``[exit N]`` states its
  exit status (0 when absent).
- A ``text`` block that directly follows a ``python`` block (blank lines between them at
  most) is what that python block prints.

Outputs are compared token by token, so that line wrapping does not matter (:func:`matches`):
words and punctuation exactly, integers exactly, decimals to 2 % (they are printed rounded),
``~x`` (a number that depends on the machine, such as a wall time) to a factor of 20, and
``...`` stands for any text, including none.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)
EXIT = re.compile(r"^\[exit (\d+)\]$")
NUMBER = r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
TOKEN = re.compile(rf"\.\.\.|~{NUMBER}|{NUMBER}|[A-Za-z_]+|\S")
FLOAT_RTOL = 0.02
TIMING_FACTOR = 20.0
TIMING_FLOOR = 0.05


@dataclass(frozen=True)
class Block:
    """A fenced block: its language, its code, where it ends, and the text after it."""

    lang: str
    code: str
    start: int
    end: int


@dataclass(frozen=True)
class Command:
    """A documented command and, when the document shows it, its output and exit status."""

    doc: str
    line: str
    output: str | None
    status: int


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    return [Block(m.group(1), m.group(2), m.start(), m.end())
            for m in BLOCK.finditer(path.read_text())]


def _output_of_python(text: str, found: list[Block], i: int) -> bool:
    """Whether block ``i`` is a ``text`` block right after a ``python`` block (its output)."""
    if found[i].lang != "text" or i == 0 or found[i - 1].lang != "python":
        return False
    return not text[found[i - 1].end : found[i].start].strip()


def python_snippets() -> list[tuple[str, int, str, str | None]]:
    """``(doc, index, code, expected output or None)`` of every python block."""
    out = []
    for path in DOCS:
        text = path.read_text()
        found = blocks(path)
        index = 0
        for i, block in enumerate(found):
            if block.lang != "python":
                continue
            shown = i + 1 < len(found) and _output_of_python(text, found, i + 1)
            out.append((path.name, index, block.code, found[i + 1].code if shown else None))
            index += 1
    return out


def orphan_text_blocks(path: Path) -> int:
    """How many ``text`` blocks of ``path`` are not the output of a python block."""
    text = path.read_text()
    found = blocks(path)
    return sum(1 for i, block in enumerate(found)
               if block.lang == "text" and not _output_of_python(text, found, i))


def console_commands(path: Path) -> list[Command]:
    """Every command of the console blocks of ``path``, with its documented output."""
    out: list[Command] = []
    for block in blocks(path):
        if block.lang not in ("", "console"):
            continue
        lines = block.code.splitlines()
        if not any(line.startswith("$ ") for line in lines):
            continue
        current: list[str] | None = None
        for line in [*lines, "$ "]:
            if line.startswith("$ "):
                if current is not None:
                    body, status = current[1:], 0
                    if body and EXIT.match(body[-1].strip()):
                        status = int(EXIT.match(body[-1].strip()).group(1))
                        body = body[:-1]
                    shown = "\n".join(body) if body else None
                    out.append(Command(path.name, current[0], shown, status))
                current = [line[2:].strip()]
            elif current is not None:
                current.append(line)
    return out


def shell_lines(path: Path) -> list[str]:
    """Command lines of the shell blocks (bash/sh/shell, and console blocks' ``$`` lines).

    Synopses (lines with ``[...]``) and comments are skipped; trailing comments are cut.
    """
    lines = []
    for block in blocks(path):
        code = block.code.replace("\\\n", " ")
        if block.lang in ("bash", "sh", "shell"):
            lines += [line.strip() for line in code.splitlines()]
        elif block.lang in ("", "console"):
            lines += [line[2:].strip() for line in code.splitlines() if line.startswith("$ ")]
    out = []
    for line in lines:
        line = re.split(r"\s+#", line)[0].strip()
        if line and not line.startswith("#") and "[" not in line.split(" --")[0]:
            out.append(line)
    return out


def tokens(text: str) -> list[str]:
    """The tokens of an output: numbers, ``~numbers``, ``...``, words and single symbols."""
    return TOKEN.findall(text)


def _is_number(token: str) -> bool:
    return re.fullmatch(NUMBER, token.removeprefix("~")) is not None


def _same(expected: str, actual: str) -> bool:
    if not _is_number(expected):
        return expected == actual
    if not _is_number(actual) or actual.startswith("~"):
        return False
    want, got = float(expected.removeprefix("~")), float(actual)
    if expected.startswith("~"):
        if abs(want) < TIMING_FLOOR and abs(got) < TIMING_FLOOR * TIMING_FACTOR:
            return True
        return want * got > 0 and 1 / TIMING_FACTOR <= got / want <= TIMING_FACTOR
    if re.fullmatch(r"-?\d+", expected):
        return re.fullmatch(r"-?\d+", actual) is not None and int(expected) == int(actual)
    if math.isclose(want, got, rel_tol=FLOAT_RTOL, abs_tol=1e-300):
        return True
    return want == got == 0.0


def _find(segment: list[str], actual: list[str], start: int) -> int:
    """First position ``>= start`` where ``segment`` matches ``actual``, or -1."""
    for pos in range(start, len(actual) - len(segment) + 1):
        if all(_same(e, a) for e, a in zip(segment, actual[pos : pos + len(segment)])):
            return pos
    return -1


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` output agrees with the documented ``expected`` output.

    Parameters
    ----------
    expected : str
        The documented output; ``...`` stands for any text, ``~x`` for a machine-dependent
        number.
    actual : str
        What the code printed.

    Returns
    -------
    bool
        True when the token streams agree under the rules of this module.
    """
    want, got = tokens(expected), tokens(actual)
    segments: list[list[str]] = [[]]
    for tok in want:
        if tok == "...":
            segments.append([])
        else:
            segments[-1].append(tok)
    if len(segments) == 1:
        return len(want) == len(got) and all(_same(e, a) for e, a in zip(want, got))
    first, *middle, last = segments
    if len(first) > len(got) or not all(_same(e, a) for e, a in zip(first, got)):
        return False
    pos = len(first)
    for segment in middle:
        found = _find(segment, got, pos)
        if found < 0:
            return False
        pos = found + len(segment)
    if len(last) > len(got) - pos:
        return False
    tail = got[len(got) - len(last) :] if last else []
    return all(_same(e, a) for e, a in zip(last, tail))
