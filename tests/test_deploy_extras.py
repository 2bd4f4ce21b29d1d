"""The optional packages' checks (``deploy.extras``): a missing one is one ImportError naming it and the pip
command; torchao's first import does not log torch's deprecation warning about torchao's own enum."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from convzoo.deploy.extras import MissingPackage, require


def test_a_missing_package_is_named_with_the_command_that_installs_it():
    with pytest.raises(MissingPackage, match=r"int8 needs 'no_such_package_xyz', not installed: pip install "
                                             r"'convzoo\[mobile\]'"):
        require(("no_such_package_xyz",), "int8")


def test_torchaos_first_import_through_require_logs_nothing_and_leaves_the_logger_as_it_was():
    # `import torchao` made torch log "W... torch/utils/_pytree.py:630] <enum 'KernelPreference'> is an Enum
    # subclass ..." on every int8 command and docs page; a fresh process shows what a user's first import prints
    code = ("import logging; from convzoo.deploy.extras import require, QUANTIZE_PACKAGES; "
            "require(QUANTIZE_PACKAGES, 'int8'); import torchao.quantization.pt2e; "
            "print(logging.getLogger('torch.utils._pytree').level)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "KernelPreference" not in done.stderr and "_pytree" not in done.stderr, done.stderr
    assert done.stdout.split() == [str(logging.NOTSET)]
