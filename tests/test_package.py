"""The built wheel carries the package data, so `pip install tlcourse` works outside the repo."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    wheels = list(out.glob("tlcourse-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_carries_weights_and_corpora(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tlcourse/models/weights/glyphs-resnet.safetensors" in names
    assert "tlcourse/models/weights/glyphs-resnet.json" in names
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tlcourse" / "data" / "corpora").glob("*.jsonl"))
    for corpus in shipped:
        assert corpus in names, f"{corpus} missing from the wheel"
    assert not any(n.startswith(("tests/", "book/", "scripts/")) for n in names)


def test_installed_wheel_loads_the_backbone_outside_the_repo(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = (
        "import tlcourse, tlcourse.models as m; "
        f"assert tlcourse.__file__.startswith({str(target)!r}), tlcourse.__file__; "
        "print(m.load_pretrained(10).head.out_features)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "10"
