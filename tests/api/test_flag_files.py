"""Flag files that cannot be read say which flag to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyserving.api.tls import TlsConfigError, load_ssl_config


def test_unreadable_ssl_config_names_its_flag(tmp_path: Path) -> None:
    missing = tmp_path / "nope.config"
    with pytest.raises(TlsConfigError, match=r"cannot read --ssl_config_file=.*nope\.config"):
        load_ssl_config(str(missing))
