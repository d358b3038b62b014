"""The layers of docs/design.md, read from the source: imports point one way.

``vl3mem -> train, eval -> videollama3 -> memory_bank -> torch``; ``benchmarks`` sits beside
``vl3mem`` (it may import any library layer, and only ``vl3mem`` imports it); ``train`` and
``eval`` do not import each other; only command-line entry points import a CLI module.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("memory_bank", "videollama3", "eval", "train", "serve", "benchmarks", "vl3mem")
FORBIDDEN = {
    "memory_bank": {"videollama3", "eval", "train", "serve", "benchmarks", "vl3mem"},
    "videollama3": {"eval", "train", "serve", "benchmarks", "vl3mem"},
    "eval": {"train", "serve", "benchmarks", "vl3mem"},
    "train": {"eval", "serve", "benchmarks", "vl3mem"},
    "serve": {"eval", "train", "benchmarks", "vl3mem"},
    "benchmarks": {"vl3mem"},
    "vl3mem": set(),
}
MEMORY_BANK_THIRD_PARTY = {"torch", "safetensors"}
CLI_MODULES = {"cli", "__main__"}


def imports(path: Path) -> list[str]:
    """Absolute module names imported by a file (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [module] if node.module else [f"{module}.{a.name}" for a in node.names]
    return names


def sources():
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_the_tree_has_the_layers():
    assert all((ROOT / pkg / "__init__.py").is_file() for pkg in PACKAGES)
    assert len(sources()) > 30


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    layer = path.relative_to(ROOT).parts[0]
    found = imports(path)
    wrong = sorted({n for n in found if n.split(".")[0] in FORBIDDEN[layer]})
    assert not wrong, f"{layer} must not import {wrong}"
    if layer == "memory_bank":
        outside = sorted({n for n in found if n.split(".")[0] not in {"memory_bank", *MEMORY_BANK_THIRD_PARTY}
                          and n.split(".")[0] not in sys.stdlib_module_names})
        assert not outside, f"memory_bank imports torch only (and safetensors to save), not {outside}"
    if path.stem not in CLI_MODULES:
        cli = sorted({n for n in found if n.split(".")[-1] in CLI_MODULES})
        assert not cli, f"only command-line entry points import a CLI module; {path.name} imports {cli}"


def test_the_checker_sees_a_violation():
    """Control: a file of memory_bank importing transformers and a CLI module is caught."""
    bad = ROOT / "memory_bank" / "_probe_for_test.py"
    bad.write_text("import transformers\nfrom videollama3.cli import main\nfrom . import cli\n")
    try:
        assert imports(bad) == ["transformers", "videollama3.cli", "memory_bank.cli"]
        with pytest.raises(AssertionError):
            test_imports_point_one_way(bad)
    finally:
        bad.unlink()


def run_in_a_fresh_interpreter(code: str):
    """``code`` run by a new Python (nothing imported yet); its completed process, which must have exited 0."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_a_missing_video_is_refused_before_the_model_code_is_imported():
    """``vl3mem answer`` opens the video before it imports ``videollama3.loading`` (transformers' model code):
    a wrong path fails in 3 s, not 5.5."""
    done = run_in_a_fresh_interpreter(
        "import sys\n"
        "from vl3mem.cli import main\n"
        "code = main(['answer', 'nowhere/nope.mp4', '-q', 'hi', '--model', 'tiny'])\n"
        "print(code, 'videollama3.loading' in sys.modules)\n"
    )
    assert done.stdout.strip().splitlines()[-1] == "2 False"
    assert done.stderr.strip().splitlines() == ["vl3mem: error: no such video file: nowhere/nope.mp4"]


def test_a_commands_help_does_not_load_transformers():
    """``vl3mem --help`` and every command's parser need torch (the memory backends' names) but not
    transformers, peft or PyAV, whose imports took 4 s more: the package ``__init__``s import on first use."""
    done = run_in_a_fresh_interpreter(
        "import sys\n"
        "from vl3mem.cli import build_parser\n"
        "parser = build_parser()\n"
        "for command in ('answer', 'eval', 'train', 'serve', 'convert', 'bench'):\n"
        "    try:\n"
        "        parser.parse_args([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'av', 'videollama3.loading') if m in sys.modules))\n"
    )
    assert done.stdout.strip().splitlines()[-1] == "['torch']"
