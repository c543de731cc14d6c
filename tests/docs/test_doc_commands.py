"""Examples are tests: every command in ``README.md`` and ``docs/*.md`` runs in CI or says why not.

Every fenced ``sh``/``bash`` block is split into commands (continuation lines joined, comments
and bare variable assignments dropped). Each command must be exactly one of:

* **run** here, in a small form the table :data:`RUNS` knows, from the repository root with a
  time bound (``citysight config check FILE``, ``citysight plan ...``, ``citysight bench NAME
  --help``...);
* **covered** by an existing test or CI file named in :data:`COVERED` (checked to still exist,
  so the table cannot rot silently);
* in a block preceded by ``<!-- not-in-ci: REASON -->``.

A command that is none of these fails, so a new command in the docs needs a small form, a
test or a stated reason. The same file checks that relative links, backticked repository paths
and dotted module references in the docs exist, that ``python`` blocks compile, and that the
README stays a ten-minute read.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
README_MAX_LINES = 250
# Set for the nested pytest a doc command may start, so it never runs these commands again.
NESTED_ENV = "CITYSIGHT_DOC_COMMANDS_NESTED"

MARKER_RE = re.compile(r"^<!--\s*not-in-ci:\s*(?P<reason>.*?)\s*-->$")
FENCE_RE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
SHELL_LANGS = frozenset({"sh", "bash", "shell", "console"})
ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Run:
    """A command form this test runs.

    Attributes:
        pattern: Full-match regex over the normalised command.
        timeout_s: Time bound of one run.
        expect: Text the output must contain.
        doc: As for :class:`Covered`.
    """

    pattern: str
    timeout_s: float
    expect: str = ""
    doc: str = ""


@dataclass(frozen=True)
class Covered:
    """A command form exercised elsewhere.

    Attributes:
        pattern: Full-match regex over the normalised command.
        by: ``tests/...py::test_name`` (the test must exist) or a file that must contain the
            command verbatim (what CI itself runs).
        doc: When set, the entry belongs to that document and is only required to match while
            the document exists (documents merged from other branches).
    """

    pattern: str
    by: str
    doc: str = ""


# Small forms run here. Commands run without a shell, ``citysight`` and ``python`` from this
# environment, cwd the repository root; servers are never started by these.
RUNS: tuple[Run, ...] = (
    Run(r"citysight config check infra/local/citysight\.example\.yaml", 120, ": ok"),
    # docs/configuration.md's preamble (the file is generated on branch i12-house).
    Run(r"citysight config schema( --markdown)?", 120, "cameras", doc="docs/configuration.md"),
    Run(r"citysight (bench [a-z]+|plan|eval|models install|triton [a-z]+) --help", 180, "usage:"),
    Run(r"citysight plan( --[a-z-]+ [\w.=,]+)*( --json)?", 180, "capacity plan"),
    Run(r"python -m pytest tests/docs/test_doc_commands\.py -k \w+", 300, "passed"),
    # docs/cluster.md: infra/k8s against the namespace cluster's layout (writes nothing)
    Run(r"citysight cluster manifests --check", 120, doc="docs/cluster.md"),
)

COVERED: tuple[Covered, ...] = (
    # The README's Quick start and what CI runs.
    Covered(
        r"bash infra/local/setup\.sh && \.venv/bin/citysight demo",
        "tests/citysight/app/test_readme_quickstart.py::test_quick_start_first_command_verbatim_in_a_clean_clone",
    ),
    Covered(r"bash infra/local/test\.sh", ".ci/run"),
    Covered(r"bash infra/local/setup\.sh --test", "infra/local/test.sh"),
    Covered(
        r"citysight run --config \S+\.yaml",
        "tests/citysight/app/test_health_e2e.py::test_frozen_triton_degrades_health_alerts_and_recovers",
    ),
    # Cameras at run time.
    Covered(
        r"curl -X (POST|PUT|DELETE) http://127\.0\.0\.1:8000/api/cameras.*",
        "tests/serve_app/api/test_auth_matrix.py::test_camera_routes",
    ),
    # Benchmarks: each in its small form.
    Covered(
        r"citysight bench decode --json",
        "tests/benchmarks/decode/test_decode_cli.py::test_bench_decode_json",
    ),
    Covered(
        r"citysight bench streams --json",
        "tests/benchmarks/streams/test_streams_cli.py::test_bench_streams_json",
    ),
    Covered(
        r"citysight bench nvdec --decoder pyav --streams [\d,]+ --json",
        "tests/benchmarks/nvdec/test_nvdec_cli.py::test_cpu_streams_decode_concurrently",
    ),
    Covered(
        r"citysight bench inference --json",
        "tests/benchmarks/inference/test_inference_bench.py::test_small_benchmark_writes_ratios",
    ),
    Covered(
        r"citysight bench inference --batches [\d,]+ --json",
        "tests/benchmarks/inference/test_inference_bench.py::test_small_batch_sweep_writes_gains",
    ),
    Covered(
        r"citysight bench pipeline",
        "tests/benchmarks/pipeline/test_pipeline.py::test_two_second_clip",
    ),
    Covered(
        r"citysight bench rules( --[a-z]+ \d+)* --json",
        "tests/benchmarks/rules/test_rules_bench.py::test_bench_rules_small",
    ),
    Covered(
        r"citysight bench fanout( --[a-z]+ \d+)* --json",
        "tests/benchmarks/fanout/test_fanout_cli.py::test_small_fanout_run",
    ),
    Covered(
        r"citysight bench city --step-up",
        "tests/benchmarks/city/test_city.py::test_small_city_end_to_end",
    ),
    Covered(
        r"citysight bench redaction --json",
        "tests/benchmarks/redaction/test_redaction_bench.py::test_bench_redaction_small",
    ),
    Covered(
        r"citysight bench video --json",
        "tests/benchmarks/video/test_video_bench.py::test_bench_video_small",
    ),
    Covered(
        r"citysight bench metrics( --[a-z]+ \d+)* --json",
        "tests/benchmarks/metrics/test_metrics_bench.py::test_bench_metrics_small",
    ),
    Covered(
        r"citysight bench urls --json",
        "tests/benchmarks/urls/test_urls_bench.py::test_bench_urls_small",
    ),
    Covered(
        r"citysight bench stats --json",
        "tests/benchmarks/stats/test_stats_bench.py::test_bench_stats_small",
    ),
    # The CSV export of the alert list (issue 16).
    Covered(
        r"curl -s -H .*X-Audit-Reason: .*http://127\.0\.0\.1:8000/api/alerts\?format=csv.*",
        "tests/serve_app/api/test_stats.py::test_csv_export_is_streamed_audited_and_safe",
    ),
    Covered(
        r"citysight bench locust( --[a-z-]+ \w+)*",
        "tests/benchmarks/locust/test_locust_run.py::test_tiny_locust_run",
    ),
    Covered(
        r"citysight bench map",
        "tests/serve_app/map/test_map_benchmark.py::test_small_benchmark_writes_results",
    ),
    # Development.
    Covered(r"ruff (check|format --check) \.", "tests/test_lint.py::test_tool_is_clean"),
    Covered(
        r"mypy citysight inference streams serve_app benchmarks",
        "tests/test_lint.py::test_tool_is_clean",
    ),
    # docs/integrations.md: webhook operations against a real Redis and receiver.
    Covered(
        r"citysight webhooks (status|dead|replay|purge) --config \S+( [\w-]+)*( # .*)?",
        "tests/serve_app/webhooks/test_webhook_admin.py::test_cli_status_dead_replay_purge",
        doc="docs/integrations.md",
    ),
    Covered(
        r"citysight webhooks receive( --[a-z-]+ \S+)*",
        "tests/serve_app/webhooks/test_webhook_admin.py::test_receive_cli_verifies_and_dedups",
        doc="docs/integrations.md",
    ),
    Covered(
        r"citysight bench webhooks( --[a-z-]+ \S+)*",
        "tests/benchmarks/webhooks/test_webhooks_bench.py::test_small_run_writes_results",
        doc="docs/benchmarks.md",
    ),
    # docs/cluster.md: root and network namespaces, the `cluster` tier.
    Covered(
        r"citysight cluster (up|status|down)",
        "tests/benchmarks/cluster/test_cluster.py::test_every_host_is_up_with_its_role",
        doc="docs/cluster.md",
    ),
)


@dataclass(frozen=True)
class Command:
    """One command of a fenced shell block.

    Attributes:
        doc: Document path relative to the repository root.
        line: 1-based line of the command's first line.
        text: The command as written (continuations joined).
        argv: Tokens without leading variable assignments, ``.venv/bin/`` stripped.
        env: Variables assigned earlier in the block or in front of the command.
        not_in_ci: The block's not-in-ci reason, if any.
    """

    doc: str
    line: int
    text: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    not_in_ci: str | None = None

    @property
    def normal(self) -> str:
        """The tokens joined by single spaces (what the tables match)."""
        return " ".join(self.argv)

    @property
    def id(self) -> str:
        """Test id: where the command is."""
        return f"{self.doc}:{self.line}"


@dataclass(frozen=True)
class Block:
    """A fenced block: language, first content line (1-based), content, marker reason."""

    lang: str
    line: int
    body: list[str]
    not_in_ci: str | None


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks(text: str) -> list[Block]:
    """Fenced blocks of a Markdown text, each with the not-in-ci marker just above it.

    Raises:
        ValueError: an unclosed fence, or a marker without a reason.
    """
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    last_nonblank = ""
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            if lines[i].strip():
                last_nonblank = lines[i].strip()
            i += 1
            continue
        fence, start = m.group("fence"), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: fence {fence} is never closed")
        marker = MARKER_RE.match(last_nonblank)
        reason = None
        if marker:
            reason = marker.group("reason")
            if len(reason) < 10:
                raise ValueError(f"line {start}: a not-in-ci marker needs a reason: {reason!r}")
        out.append(Block(m.group("lang").lower(), start + 2, body, reason))
        last_nonblank = lines[i]
        i += 1
    return out


def split_commands(block: Block, doc: str) -> list[Command]:
    """The commands of a shell block.

    Raises:
        ValueError: a quote left open at the end of the block.
    """
    out: list[Command] = []
    env: dict[str, str] = {}
    buf, first = "", 0
    for n, raw in enumerate(block.body):
        if not buf and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if not buf:
            first = block.line + n
        line = raw.rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        try:
            tokens = shlex.split(buf, comments=True)
        except ValueError:
            buf += "\n"  # a quoted string goes on over the next line
            continue
        text, buf = buf, ""
        if tokens and tokens[0] == "export":
            tokens = tokens[1:]
        own: dict[str, str] = {}
        while tokens and ASSIGN_RE.match(tokens[0]):
            k, _, v = tokens.pop(0).partition("=")
            own[k] = v
        if not tokens:
            env.update(own)
            continue
        if tokens[0].startswith(".venv/bin/"):
            tokens[0] = tokens[0].removeprefix(".venv/bin/")
        out.append(
            Command(doc, first, text.strip(), tuple(tokens), {**env, **own}, block.not_in_ci)
        )
    if buf:
        raise ValueError(f"{doc}:{first}: unterminated command: {buf!r}")
    return out


def doc_commands(root: Path = ROOT) -> list[Command]:
    """Every command of every shell block of the docs."""
    out: list[Command] = []
    for path in doc_files(root):
        rel = path.relative_to(root).as_posix()
        for block in blocks(path.read_text(encoding="utf-8")):
            if block.lang in SHELL_LANGS:
                out.extend(split_commands(block, rel))
    return out


def matches(pattern: str, cmd: Command) -> bool:
    """Whether a table pattern matches the whole command (quoted strings may span lines)."""
    return re.fullmatch(pattern, cmd.normal, re.S) is not None


def run_entry(cmd: Command) -> Run | None:
    """The :data:`RUNS` entry for ``cmd``, if any."""
    return next((r for r in RUNS if matches(r.pattern, cmd)), None)


def covered_entry(cmd: Command) -> Covered | None:
    """The :data:`COVERED` entry for ``cmd``, if any."""
    return next((c for c in COVERED if matches(c.pattern, cmd)), None)


def check_covered_by(entry: Covered, cmd: Command, root: Path = ROOT) -> str | None:
    """Why ``entry`` does not really cover ``cmd``, or ``None`` when it does."""
    path, _, test = entry.by.partition("::")
    file = root / path
    if not file.is_file():
        return f"{entry.by}: {path} does not exist"
    text = file.read_text(encoding="utf-8")
    if test:
        if not re.search(rf"^(async )?def {re.escape(test)}\(", text, re.M):
            return f"{entry.by}: {path} has no test {test}"
        return None
    if cmd.text not in text:
        return f"{path} does not contain the command {cmd.text!r}"
    return None


def classify(cmd: Command, root: Path = ROOT) -> str:
    """``run``, ``covered`` or ``not-in-ci``.

    Raises:
        AssertionError: the command is none of these, or its covering test is gone.
    """
    if cmd.not_in_ci is not None:
        return "not-in-ci"
    if run_entry(cmd) is not None:
        return "run"
    entry = covered_entry(cmd)
    if entry is None:
        raise AssertionError(
            f"{cmd.id}: `{cmd.text}` does not run in CI: add a small form to RUNS, a covering "
            "test to COVERED (tests/docs/test_doc_commands.py), or put "
            "`<!-- not-in-ci: REASON -->` on the line before its block"
        )
    problem = check_covered_by(entry, cmd, root)
    if problem is not None:
        raise AssertionError(f"{cmd.id}: `{cmd.text}`: {problem}")
    return "covered"


COMMANDS = doc_commands()


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_every_doc_command_runs_is_covered_or_says_why_not(cmd: Command) -> None:
    """Each documented command is run here, covered by a named test, or marked not-in-ci."""
    if classify(cmd) != "run":
        return
    if os.environ.get(NESTED_ENV):
        pytest.skip("inside a doc command's own pytest run")
    entry = run_entry(cmd)
    assert entry is not None
    exe = {"citysight": str(BIN / "citysight"), "python": sys.executable}
    argv = [exe[cmd.argv[0]], *cmd.argv[1:]]
    env = {
        **os.environ,
        "ORT_DISABLE_TELEMETRY": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        NESTED_ENV: "1",
        **cmd.env,
    }
    res = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=entry.timeout_s
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{cmd.id}: `{cmd.text}` exited {res.returncode}:\n{out[-3000:]}"
    assert entry.expect in out, f"{cmd.id}: `{cmd.text}` did not print {entry.expect!r}"


def test_every_table_entry_is_used() -> None:
    """A RUNS or COVERED entry that no document uses any more is dead weight: remove it."""
    unused = []
    for entry in (*RUNS, *COVERED):
        if entry.doc and not (ROOT / entry.doc).exists():
            continue
        pool = [x for x in COMMANDS if not entry.doc or x.doc == entry.doc]
        if not any(matches(entry.pattern, x) for x in pool):
            unused.append(entry.pattern)
    assert not unused, f"entries matching no documented command: {unused}"


def _documented_citysight_commands() -> list[Command]:
    return [c for c in COMMANDS if c.argv[0] == "citysight"]


def _choices(usage: str) -> set[str]:
    """The choices of the first positional argument in an argparse usage text."""
    m = re.search(r"\{([\w,-]+)\}", usage)
    assert m, f"no choices in:\n{usage}"
    return set(m.group(1).split(","))


def test_documented_citysight_subcommands_exist() -> None:
    """Every ``citysight X [Y]`` in the docs names a real command, marked not-in-ci or not."""
    cli = str(BIN / "citysight")

    def usage(*args: str) -> str:
        res = subprocess.run([cli, *args, "--help"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        return " ".join(res.stdout.split())

    top = _choices(usage())
    groups: dict[str, set[str]] = {}
    for cmd in _documented_citysight_commands():
        sub = cmd.argv[1] if len(cmd.argv) > 1 else ""
        assert sub in top, f"{cmd.id}: `citysight {sub}` is not a command ({sorted(top)})"
        if sub in {"bench", "models"} and len(cmd.argv) > 2 and not cmd.argv[2].startswith("-"):
            if sub not in groups:
                groups[sub] = _choices(usage(sub))
            assert cmd.argv[2] in groups[sub], (
                f"{cmd.id}: `citysight {sub} {cmd.argv[2]}` is not one of {sorted(groups[sub])}"
            )


# -- the classifier itself -------------------------------------------------------------------

SAMPLE = """\
# Title

```sh
export FOO=1
citysight config check infra/local/citysight.example.yaml   # runs
citysight frobnicate --all
```

<!-- not-in-ci: needs a GPU node with NVDEC -->
```bash
citysight bench nvdec --streams 1,8 --json
```

```sh
curl -X POST http://127.0.0.1:8000/api/cameras -H 'X: y' \\
  -d '{"a": 1,
       "b": 2}'
```

```text
<!-- not-in-ci: inside a text block this is not a marker -->
```
```sh
citysight frobnicate
```
"""


def test_the_classifier_accepts_runs_covers_and_markers_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(SAMPLE, encoding="utf-8")
    cmds = doc_commands(tmp_path)
    assert [c.normal.split(" ")[:3] for c in cmds] == [
        ["citysight", "config", "check"],
        ["citysight", "frobnicate", "--all"],
        ["citysight", "bench", "nvdec"],
        ["curl", "-X", "POST"],
        ["citysight", "frobnicate"],
    ]
    assert cmds[0].env == {"FOO": "1"} and cmds[0].line == 5
    assert classify(cmds[0], tmp_path) == "run"
    assert classify(cmds[2], tmp_path) == "not-in-ci"
    assert cmds[2].not_in_ci == "needs a GPU node with NVDEC"
    assert cmds[3].line == 15 and '"b": 2' in cmds[3].argv[-1]
    for uncovered in (cmds[1], cmds[4]):
        with pytest.raises(AssertionError, match="does not run in CI"):
            classify(uncovered, tmp_path)
    # A covering test that disappeared is an error, not a pass.
    with pytest.raises(AssertionError, match="does not exist"):
        classify(cmds[3], tmp_path)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<!-- not-in-ci: -->\n```sh\nls\n```\n", "needs a reason"),
        ("<!-- not-in-ci: GPU -->\n```sh\nls\n```\n", "needs a reason"),
        ("```sh\nls\n", "never closed"),
    ],
)
def test_bad_markup_is_an_error(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        blocks(text)


def test_an_open_quote_is_an_error() -> None:
    block = Block("sh", 1, ["echo 'never closed"], None)
    with pytest.raises(ValueError, match="unterminated"):
        split_commands(block, "README.md")


# -- links, paths and module references --------------------------------------------------------

LINK_RE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1")
PATH_RE = re.compile(r"^[\w.\-/]+$")
TEST_REF_RE = re.compile(r"^([\w./-]+\.py)::(\w+)$")
PACKAGES = ("citysight", "streams", "inference", "serve_app", "benchmarks")
MODULE_RE = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_]\w*)?$")
FILE_SUFFIXES = (".yaml", ".yml", ".json", ".md", ".py", ".png", ".onnx", ".mp4", ".txt", ".sh")


def prose(text: str) -> str:
    """The text without fenced blocks (their content is code, not references)."""
    out, fence = [], ""
    for line in text.splitlines():
        m = FENCE_RE.match(line)
        if fence:
            if line.startswith(fence):
                fence = ""
            continue
        if m:
            fence = m.group("fence")
            continue
        out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading text."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Heading anchors of a Markdown file (duplicates get ``-1``, ``-2``... like GitHub)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links (and their anchors) of ``path`` that point nowhere."""
    bad = []
    text = CODE_SPAN_RE.sub("", prose(path.read_text(encoding="utf-8")))
    for target in LINK_RE.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif not dest.resolve().is_relative_to(root.resolve()):
            bad.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


def _top_level(root: Path) -> set[str]:
    skip = {"build", "dist", "node_modules"}
    names = {
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in skip
        and not p.name.endswith(".egg-info")
    }
    return names | {".ci"}


def module_problem(ref: str, root: Path = ROOT) -> str | None:
    """Why a dotted reference (``pkg.mod``, ``pkg.mod.Name``, ``pkg.mod:func``) is stale."""
    dotted, _, func = ref.partition(":")
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:n])
        module = (
            base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        )
        if module.is_file():
            break
    else:
        return f"{ref}: no module {parts[0]}"
    if n == 1 and len(parts) > 1 and not func:
        return f"{ref}: no module {'.'.join(parts[:2])}"
    names = [*parts[n:], *([func] if func else [])]
    text = module.read_text(encoding="utf-8")
    if names and not re.search(rf"\b{re.escape(names[0])}\b", text):
        return f"{ref}: {module.relative_to(root)} does not define {names[0]}"
    return None


def reference_problems(path: Path, root: Path = ROOT) -> list[str]:
    """Backticked repository paths and module references of ``path`` that do not exist."""
    bad = []
    top = _top_level(root)
    for _, span in CODE_SPAN_RE.findall(prose(path.read_text(encoding="utf-8"))):
        ref = span.strip()
        test = TEST_REF_RE.match(ref)
        if test:
            file = root / test.group(1)
            if not file.is_file():
                bad.append(f"{ref}: no such file")
            elif not re.search(rf"def {test.group(2)}\(", file.read_text(encoding="utf-8")):
                bad.append(f"{ref}: no such test")
            continue
        if PATH_RE.match(ref) and "/" in ref and ref.split("/", 1)[0] in top:
            if not (root / ref).exists():
                bad.append(f"{ref}: no such file or folder")
            continue
        if MODULE_RE.match(ref) and not ref.endswith(FILE_SUFFIXES):
            problem = module_problem(ref, root)
            if problem:
                bad.append(problem)
    return bad


DOCS = doc_files()


@pytest.mark.parametrize("path", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_relative_links_exist(path: Path) -> None:
    """Every relative link and image of the docs points at a file (and heading) that exists."""
    assert not broken_links(path)


@pytest.mark.parametrize("path", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_path_and_module_references_exist(path: Path) -> None:
    """Backticked paths (``serve_app/INTERFACES.md``) and modules (``serve_app.app:build_app``)."""
    assert not reference_problems(path)


def test_modules_run_by_doc_commands_exist() -> None:
    """``python -m X`` in any doc command, marked not-in-ci or not, names a real module."""
    bad = []
    for cmd in COMMANDS:
        argv = list(cmd.argv)
        for i, tok in enumerate(argv[:-1]):
            if tok == "-m" and MODULE_RE.match(argv[i + 1]):
                problem = module_problem(argv[i + 1])
                if problem:
                    bad.append(f"{cmd.id}: {problem}")
    assert not bad


def test_reference_checks_catch_stale_references(tmp_path: Path) -> None:
    """The checkers fail on what they exist to catch."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "citysight").mkdir()
    (tmp_path / "citysight" / "__init__.py").write_text("")
    (tmp_path / "citysight" / "cli.py").write_text("def main():\n    pass\n")
    (tmp_path / "docs" / "b.md").write_text("# B\n\n## The part `x`\n")
    doc = tmp_path / "docs" / "a.md"
    doc.write_text(
        "[ok](b.md#the-part-x) [gone](c.md) [anchor](b.md#nowhere) [web](https://x.org/y)\n"
        "`pkg/missing.py` `citysight/cli.py` `citysight.cli:main` `citysight.cli:nope` "
        "`citysight.gone` `citysight.example.yaml` `not/a/repo/path`\n"
        "```sh\n[in code](nowhere.md) `pkg/also-missing.py`\n```\n",
        encoding="utf-8",
    )
    assert broken_links(doc, tmp_path) == [
        "c.md: no such file",
        "b.md#nowhere: no heading #nowhere in b.md",
    ]
    assert reference_problems(doc, tmp_path) == [
        "pkg/missing.py: no such file or folder",
        "citysight.cli:nope: citysight/cli.py does not define nope",
        "citysight.gone: no module citysight.gone",
    ]


CITATION_RE = re.compile(
    r"\b(?P<file>docs/[\w.-]+\.md|README(?:\.md)?|ARCHITECTURE\.md)\b"
    r"(?:,\s*\"(?P<section>[^\"\n]+)\")?"
)
CITING_DIRS = (
    "citysight",
    "streams",
    "inference",
    "serve_app",
    "benchmarks",
    "infra",
    "model_repo",
)
CITING_SUFFIXES = frozenset({".py", ".yaml", ".yml", ".sh", ".pbtxt"})


def citation_problems(root: Path = ROOT) -> list[str]:
    """Code and config comments citing a doc (``docs/x.md, "Section"``) that is not there.

    A bare ``README`` may mean any README (``../shared/data/README.md``...), so it is checked
    only when it names a section, against the repository's README.
    """
    bad = []
    for top in CITING_DIRS:
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in CITING_SUFFIXES or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for m in CITATION_RE.finditer(line):
                    name, section = m.group("file"), m.group("section")
                    if name.startswith("README") and not section:
                        continue
                    target = root / ("README.md" if name.startswith("README") else name)
                    if not target.is_file():
                        bad.append(f"{rel}:{n}: cites {name}, which is not in the repository")
                    elif section and slug(section) not in anchors(target):
                        bad.append(f"{rel}:{n}: {name} has no section {section!r}")
    return bad


def test_code_citations_of_docs_exist() -> None:
    """The code cites the docs that exist, down to the section (no phantom ARCHITECTURE.md)."""
    assert not citation_problems()


def test_citation_check_catches_stale_citations(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.md").write_text("# A\n\n## Hard rules\n")
    (tmp_path / "README.md").write_text("# R\n\n## Quick start\n")
    (tmp_path / "serve_app").mkdir()
    (tmp_path / "serve_app" / "m.py").write_text(
        '"""Durability (docs/architecture.md, "Hard rules"); see README, "Quick start".\n'
        'Semantics (README, "Health"); (ARCHITECTURE.md, "Contracts"); docs/gone.md;\n'
        'the ../shared/data/README.md format."""\n'
    )
    assert citation_problems(tmp_path) == [
        "serve_app/m.py:2: README has no section 'Health'",
        "serve_app/m.py:2: cites ARCHITECTURE.md, which is not in the repository",
        "serve_app/m.py:2: cites docs/gone.md, which is not in the repository",
    ]


@pytest.mark.parametrize("path", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_python_blocks_compile(path: Path) -> None:
    """Python examples in the docs are at least valid Python."""
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.lang in {"python", "py"}:
            compile("\n".join(block.body), f"{path.name}:{block.line}", "exec")


def test_readme_is_a_ten_minute_read() -> None:
    """The README stays short: details belong in docs/."""
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES})"
