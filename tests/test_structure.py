"""The package's shape: small modules and functions, one home per helper, a clean layering."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tlcourse"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _docstring_lines(node: ast.AST) -> int:
    """Lines taken by the docstrings of ``node`` and of everything defined inside it."""
    total = 0
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = sub.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                total += body[0].end_lineno - body[0].lineno + 1
    return total


def _is_plotting(path: Path, node: ast.AST) -> bool:
    name = getattr(node, "name", "")
    return path.name == "plots.py" or name.startswith(("plot", "show", "_plot", "_show"))


def _sizes(path: Path) -> tuple[int, list[tuple[str, int]]]:
    """(module lines without docstrings and plotting code, [(function, lines without docstrings)])."""
    tree = ast.parse(path.read_text())
    module_lines = len(path.read_text().splitlines()) - _docstring_lines(tree)
    functions = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            if _is_plotting(path, node):
                if node in tree.body:  # top-level plotting functions do not count towards the module
                    module_lines -= lines
                continue
            functions.append((node.name, lines))
    return module_lines, functions


def test_no_module_over_400_lines_and_no_function_over_80():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module_lines, functions = _sizes(path)
        rel = path.relative_to(ROOT)
        if module_lines > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {module_lines} lines")
        too_long += [f"{rel}:{name}: {n} lines" for name, n in functions if n > MAX_FUNCTION_LINES]
    assert not too_long, "over the size limits (docstrings and plotting code aside):\n" + "\n".join(too_long)


def test_the_size_rule_counts_what_it_should(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    (tmp_path / "m.py").write_text(f'def f():\n    """doc\n    more doc"""\n{body}\n\ndef plot_g():\n{body}\n')
    module_lines, functions = _sizes(tmp_path / "m.py")
    assert functions == [("f", 82)]  # the def line and 81 statements; the docstring is not counted
    assert module_lines == 83  # the plotting function is left out


def test_importing_a_loss_does_not_import_the_training_stack():
    code = (
        "import sys, tlcourse.adapt.discrepancy, tlcourse.models.lora; "
        "heavy = [m for m in sys.modules if m.startswith(('tlcourse.train', 'tlcourse.adapt.loop', "
        "'tlcourse.adapt.dann', 'tlcourse.finetune'))]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"importing a loss pulled in: {result.stdout.strip()}"


@pytest.mark.parametrize(
    "module, names",
    [
        ("tlcourse.train", ["fit", "evaluate", "predict", "History", "make_loader", "autocast_context",
                            "NonFiniteLossError"]),
        ("tlcourse.multitask", ["MultiTaskModel", "Weighting", "LossWeighting", "EqualWeighting",
                                "UncertaintyWeighting", "DynamicWeightAverage", "GradNorm", "PCGrad", "WEIGHTINGS",
                                "make_weighting", "dwa_weights", "pcgrad_project", "task_gradients",
                                "gradient_cosine", "relative_gain", "MultiTaskHistory", "fit_multitask",
                                "evaluate_multitask"]),
        ("tlcourse.data.captions", ["SHAPES", "COLOURS", "SIZES", "POSITIONS", "COUNTS", "ATTRIBUTES",
                                    "DEFAULT_HOLDOUT", "SYNONYMS", "UNSEEN_SYNONYMS", "UNSEEN_TEMPLATES",
                                    "CaptionDataset", "CaptionSplit", "FusionDataset", "FusionSplit",
                                    "sample_scenes", "render_scenes", "caption_scenes", "make_captions",
                                    "make_fusion_task", "combo_index", "combo_names", "class_prompts",
                                    "zero_shot_prompts", "parse_caption"]),
        ("tlcourse.multimodal", ["WordTokenizer", "Captioner", "fit_captioner", "fit_dual_encoder"]),
        ("tlcourse.adapt", ["MMDLoss", "train_adaptation", "train_dann", "train_adda", "extract_features"]),
    ],
)
def test_public_names_keep_their_import_paths(module, names):
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing and set(names) <= set(mod.__all__)


def test_one_home_per_helper():
    from tlcourse import checks, finetune, utils
    from tlcourse.adapt import dann, loop
    from tlcourse.models import lora
    from tlcourse.multimodal import captioning, tokenizer
    from tlcourse.train import features

    assert finetune.count_parameters is utils.count_parameters is lora.count_parameters
    assert finetune.extract_features is features.extract_features is loop.extract_features
    assert dann.check_feature_pair is checks.check_feature_pair
    assert captioning.WordTokenizer is tokenizer.WordTokenizer
