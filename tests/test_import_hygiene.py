"""The domain imports without the TUI, and the CLI's cheap commands import no SDK.

Each check runs in a fresh interpreter (this test process has long since imported
everything) and reports, at exit, which of the watched top-level packages were loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SDKS = ("boto3", "botocore", "moto", "paramiko", "github", "infisical_sdk", "textual", "psycopg", "psycopg_pool")

# Runs the CLI (or imports modules) and prints the watched packages found in sys.modules
# at interpreter exit, after click's own sys.exit.
WRAPPER = r"""
import atexit, json, sys
WATCHED = set(json.loads(sys.argv[1]))
MARK = "@@LOADED@@"

def report():
    loaded = sorted({name.split(".")[0] for name in list(sys.modules)} & WATCHED)
    sys.stderr.write(MARK + json.dumps(loaded) + "\n")
    sys.stderr.flush()

atexit.register(report)
what, args = sys.argv[2], sys.argv[3:]
if what == "import":
    import importlib
    for module in args:
        importlib.import_module(module)
else:
    from tui.cli import main
    main(args, prog_name="handrail")
"""


def loaded_by(what: str, *args: str, cwd: Path) -> tuple[list[str], subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, json.dumps(SDKS), what, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,  # not the repository: `-c` puts the working directory on sys.path
        env=env,
        timeout=120,
    )
    marks = [line for line in proc.stderr.splitlines() if line.startswith("@@LOADED@@")]
    assert len(marks) == 1, f"no report from the child (exit {proc.returncode}):\n{proc.stderr}"
    return json.loads(marks[0][len("@@LOADED@@") :]), proc


def test_the_wrapper_sees_what_is_imported(tmp_path):
    """The control: the probe does notice an SDK when one is loaded."""
    loaded, proc = loaded_by("import", "botocore", cwd=tmp_path)
    assert proc.returncode == 0
    assert loaded == ["botocore"]


def test_the_domain_imports_without_textual(tmp_path):
    modules = [
        "steps",
        "steps.engine",
        "steps.driver",
        "steps.loader",
        "steps.journal",
        "steps.audit",
        "steps.secrets",
        "steps.model",
        "steps.plan",
        "steps.wiring",
    ]
    loaded, proc = loaded_by("import", *modules, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "textual" not in loaded, loaded


def test_the_action_registry_and_the_sandbox_never_import_textual(tmp_path):
    loaded, proc = loaded_by("import", "steps.actions", "steps.actions.iam", "steps.actions.audit", "steps.sandbox.world", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "textual" not in loaded, loaded


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["run", "--help"]], ids=" ".join)
def test_help_and_version_import_no_sdk(tmp_path, args):
    loaded, proc = loaded_by("cli", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert loaded == [], f"`handrail {' '.join(args)}` imported {loaded}"


@pytest.mark.parametrize(
    "args",
    [
        ["check", "aws-iam-access-key"],
        ["plan", "aws-iam-access-key"],
        ["plan", "--format", "markdown"],
        ["sessions", "--json"],
        ["audit", "verify"],
    ],
    ids=" ".join,
)
def test_the_cheap_commands_import_no_sdk_and_no_textual(tmp_path, monkeypatch, args):
    home = tmp_path / "home"
    monkeypatch.setenv("HANDRAIL_HOME", str(home))
    if args[0] == "audit":
        from steps.audit import AuditLog

        AuditLog(home / "audit.jsonl").append("test.event")
    loaded, proc = loaded_by("cli", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert loaded == [], f"`handrail {' '.join(args)}` imported {loaded}"


@pytest.mark.slow
def test_a_training_run_does_not_import_textual(tmp_path, monkeypatch):
    monkeypatch.setenv("HANDRAIL_HOME", str(tmp_path / "home"))
    loaded, proc = loaded_by("cli", "run", "--yes", "--fast-forward", "--confirm-irreversible", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "textual" not in loaded
    assert {"moto", "botocore"} <= set(loaded)  # the control: it did reach the sandbox


def test_the_console_script_help_is_the_same_command(tmp_path):
    script = Path(sys.executable).with_name("handrail")
    if not script.exists():
        pytest.fail(f"the console script is not installed next to {sys.executable} (pip install -e '.[test]')")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: handrail" in proc.stdout


def test_no_import_cycle_inside_the_domain():
    """Between the parts of `steps` (a module, or a package such as steps.actions), lazy
    and TYPE_CHECKING imports included: a cycle kept alive by a function-local import
    breaks as soon as someone moves that import to the top."""
    grimp = pytest.importorskip("grimp")  # the dev extra (import-linter's graph library)
    import steps

    graph = grimp.build_graph("steps", cache_dir=None)
    assert Path(steps.__file__).parent == Path(__file__).parents[1] / "steps", "the graph must be of this checkout"
    parts = sorted({".".join(m.split(".")[:2]) for m in graph.modules if m != "steps"})
    for importer in parts:
        for imported in parts:
            if importer != imported and graph.direct_import_exists(importer=importer, imported=imported, as_packages=True):
                back = graph.find_shortest_chain(importer=imported, imported=importer, as_packages=True)
                assert back is None, f"{importer} imports {imported}, and {imported} imports it back: {' -> '.join(back)}"
    modules = sorted(graph.modules)
    for module in modules:
        for other in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=other, imported=module)
            assert back is None, f"{module} imports {other}, which imports it back: {' -> '.join(back)}"
