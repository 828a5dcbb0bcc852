"""The docs cannot rot: every command they show is checked against the code, every link
between them resolves, and README.md stays a front door.

- each `pyserving ...` / `tensorflow_model_server ...` line in a code block is parsed by
  the real command-line parser (an unknown flag or a bad value fails); the one line
  shown as a mistake (followed by its `# pyserving serve: error:` output) must fail;
- each `python examples/X.py` / `python -m bench...` line names a file that exists, and
  each `--flag` it uses is declared in that program's source;
- each relative link names a file of the repository, and each `#anchor` a heading there.

tests/e2e/test_docs_e2e.py runs the README's quickstart against a real server.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyserving.api.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOPICS = {
    "architecture.md",
    "configuration.md",
    "apis.md",
    "batching.md",
    "observability.md",
    "replay.md",
    "performance.md",
    "reliability.md",
    "deployment.md",
}
ERROR_MARK = "# pyserving serve: error:"


@dataclass(frozen=True)
class Command:
    page: str
    words: list[str]
    expect_error: bool

    def __str__(self) -> str:
        return f"{self.page}: {shlex.join(self.words)}"


def shell_blocks(text: str) -> list[list[str]]:
    """The lines of each ```sh / ```bash / bare ``` block, continuation lines joined."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    inside = False
    for line in text.splitlines():
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and not inside:
            inside = True
            current = [] if fence.group(1) in ("sh", "bash", "") else None
        elif fence:
            inside = False
            if current is not None:
                blocks.append(current)
            current = None
        elif current is not None:
            if current and current[-1].endswith("\\"):
                current[-1] = current[-1][:-1] + " " + line.strip()
            else:
                current.append(line)
    return blocks


def commands(program: str) -> list[Command]:
    """Every command line of the docs whose program (after VAR=value words) is `program`."""
    found = []
    for page in PAGES:
        for block in shell_blocks(page.read_text()):
            for i, line in enumerate(block):
                if line[:1].isspace():
                    continue  # a diagram or an answer, not a command
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue  # not a shell line (a diagram, JSON)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words = words[1:]
                if words and words[0] == program:
                    following = block[i + 1] if i + 1 < len(block) else ""
                    found.append(
                        Command(page.name, words, following.strip().startswith(ERROR_MARK))
                    )
    return found


SERVER_COMMANDS = commands("pyserving") + [
    Command(c.page, ["pyserving", "serve", *c.words[1:]], c.expect_error)
    for c in commands("tensorflow_model_server")
]
PYTHON_COMMANDS = commands("python")


def test_the_docs_show_commands_to_check() -> None:
    assert len(SERVER_COMMANDS) >= 15
    assert {c.words[1] for c in SERVER_COMMANDS} >= {"serve", "replay", "warmup-from-logs"}
    assert len(PYTHON_COMMANDS) >= 15


@pytest.mark.parametrize("command", SERVER_COMMANDS, ids=str)
def test_each_pyserving_command_parses(command: Command) -> None:
    parser = build_parser()
    if command.expect_error:
        with pytest.raises(SystemExit):
            namespace, unknown = parser.parse_known_args(command.words[1:])
            if unknown:
                raise SystemExit(2)
        return
    namespace, unknown = parser.parse_known_args(command.words[1:])
    assert unknown == [], f"{command}: not flags of `pyserving {command.words[1]}`"
    assert namespace.command == command.words[1]


def program_sources(words: list[str]) -> tuple[list[Path], list[str]]:
    """The source files of `python ...` and the flags given to it."""
    if words[1] == "-m":
        module = words[2]
        path = ROOT / module.replace(".", "/")
        sources = [path / "__main__.py"] if path.is_dir() else [path.with_suffix(".py")]
        args = words[3:]
    elif words[1] == "-c":
        return [], []
    else:
        sources, args = [ROOT / words[1]], words[2:]
    flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    return sources, flags


@pytest.mark.parametrize("command", PYTHON_COMMANDS, ids=str)
def test_each_python_command_names_a_program_and_its_flags(command: Command) -> None:
    sources, flags = program_sources(command.words)
    if not sources:
        return
    for source in sources:
        assert source.is_file(), f"{command}: {source.relative_to(ROOT)} does not exist"
    text = "".join(source.read_text() for source in sources)
    for flag in flags:
        if flag == "--help":
            continue
        assert f'"{flag}"' in text, f"{command}: {flag} is not declared in {sources[0].name}"


# ---------------------------------------------------------------------- links
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def links() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        found += [(page.relative_to(ROOT).as_posix(), target) for target in LINK.findall(text)]
    return found


@pytest.mark.parametrize(("page", "target"), links())
def test_each_link_resolves_inside_the_repository(page: str, target: str) -> None:
    assert not re.match(r"\w+://", target), f"{page} links outside the repository: {target}"
    path, _, anchor = target.partition("#")
    file = (ROOT / page).parent / path if path else ROOT / page
    assert file.resolve().is_relative_to(ROOT), f"{page}: {target} leaves the repository"
    assert file.exists(), f"{page}: {target}: no such file"
    if anchor:
        assert anchor in anchors(file), f"{page}: {target}: no such heading"


def test_readme_is_a_front_door_linking_every_topic() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = {target.partition("#")[0] for _, target in links() if _ == "README.md"}
    assert {f"docs/{topic}" for topic in TOPICS} <= linked
    assert "docs/limits.md" in linked and "docs/tf_serving_compat.md" in linked
    for topic in TOPICS:
        assert (ROOT / "docs" / topic).is_file()


MAKE_COMMANDS = commands("make")


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=str)
def test_each_make_command_names_a_target(command: Command) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for word in command.words[1:]:
        if word == "&&":
            break  # the next command of the line
        if "=" in word:
            continue  # a variable, e.g. DEMO_DIR=...
        assert re.search(rf"^{re.escape(word)}:", makefile, re.M), f"{command}: no target {word}"


@pytest.mark.parametrize("script", [".ci/run", ".ci/system-deps"])
def test_the_ci_scripts_the_docs_name_exist_and_share_the_tool_list(script: str) -> None:
    path = ROOT / script
    assert path.is_file() and path.stat().st_mode & 0o111
    assert "system-deps" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^test: install\n\t\.ci/system-deps$", (ROOT / "Makefile").read_text(), re.M)


def test_ci_runs_the_linters_and_type_checker_before_the_tests() -> None:
    run = (ROOT / ".ci" / "run").read_text().splitlines()
    assert run.index("make lint") < run.index("make test")
    lint = re.search(r"^lint: install\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert lint is not None and ".ci/typecheck.py" in lint.group(1)
