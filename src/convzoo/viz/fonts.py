"""The CJK font of the bilingual captions: Noto Sans SC (SIL OFL 1.1) from the pip package ``pylopdf-fonts-zh-cn``,
registered with matplotlib by its path, never a font the machine happens to have. Latin text keeps matplotlib's
default font; Chinese characters fall back to Noto Sans SC glyph by glyph (matplotlib's font fallback list).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib
from matplotlib import font_manager

FONT_PACKAGE = "pylopdf-fonts-zh-cn"


@functools.lru_cache(maxsize=1)
def cjk_font() -> tuple[str, Path]:
    """(family name, file) of the CJK font, added to matplotlib's font manager once; RuntimeError naming the package
    to install when it is missing."""
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        raise RuntimeError(f"the Chinese captions need the font package {FONT_PACKAGE!r}: pip install "
                           f"{FONT_PACKAGE} (or draw with --lang en)") from None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    font_manager.fontManager.addfont(str(path))
    name = font_manager.FontProperties(fname=str(path)).get_name()
    # The package ships the regular weight only: bold titles take it for their Chinese characters, as intended.
    logging.getLogger("matplotlib.font_manager").addFilter(
        lambda record: not (record.getMessage().startswith("findfont: Failed to find font weight")
                            and name in record.getMessage()))
    return name, path


@contextlib.contextmanager
def cjk_text() -> Iterator[str]:
    """Within the block, text created by matplotlib falls back to the CJK font for characters the default font
    lacks (text keeps the font it was created with, so figures drawn here may be saved later)."""
    name, _ = cjk_font()
    families = [f for f in matplotlib.rcParams["font.family"] if f != name] + [name]
    with matplotlib.rc_context({"font.family": families}):
        yield name


def has_cjk(text: str) -> bool:
    return any(is_cjk(ch) for ch in text)


def is_cjk(ch: str) -> bool:
    """A CJK ideograph or CJK punctuation / full-width form (what the default Latin font lacks)."""
    o = ord(ch)
    return 0x3000 <= o <= 0x303F or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xFF00 <= o <= 0xFFEF


@contextlib.contextmanager
def missing_glyphs() -> Iterator[list[str]]:
    """Collect matplotlib's 'Glyph … missing from font(s)' warnings raised while drawing inside the block."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    for w in caught:
        text = str(w.message)
        if "missing from font" in text:
            found.append(text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


_TOKEN = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]|[^\s\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+|\s+")


def wrap(text: str, width: float, size: float = 9.0, weight: str = "normal") -> str:
    """``text`` broken into lines no wider than ``width`` cells at ``size`` points, measured by the renderer; Latin
    breaks at spaces, Chinese between any two characters."""
    from .draw import text_size

    lines: list[str] = []
    current = ""
    for token in _TOKEN.findall(text):
        trial = current + token
        if current.strip() and not token.isspace() and text_size(trial.rstrip(), size, weight)[0] > width:
            lines.append(current.rstrip())
            current = token
        else:
            current = trial if current or not token.isspace() else ""
    if current.strip():
        lines.append(current.rstrip())
    return "\n".join(lines)
