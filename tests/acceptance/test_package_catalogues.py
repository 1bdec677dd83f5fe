"""The compiled catalogues are build products: a wheel built from the sources alone (no .mo
in the tree, as in a fresh clone or the Dockerfile's builder) carries every one of them."""

from __future__ import annotations

import gettext
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from dispatcher import i18n

ROOT = Path(__file__).parents[2]


def test_a_wheel_built_from_the_sources_carries_the_compiled_catalogues(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "dispatcher", source / "dispatcher",
        ignore=shutil.ignore_patterns("*.mo", "__pycache__"),
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source),
         "--wheel-dir", str(tmp_path / "wheel")],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    [wheel] = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for lang in i18n.LANGUAGES:
            for domain in i18n.DOMAINS:
                data = archive.read(f"dispatcher/i18n/locale/{lang}/LC_MESSAGES/{domain}.mo")
                catalogue = gettext.GNUTranslations(io.BytesIO(data))
                if lang == "en" and domain == "email":
                    assert catalogue.gettext("Guten Tag,") == "Hello,"
