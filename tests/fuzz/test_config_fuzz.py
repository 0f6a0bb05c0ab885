"""Fuzzing the config loader: any file text and any TRADING_BOT__* override either
loads into a valid Config or fails with a ConfigError that names where; nothing
else escapes, and a refused environment never changes the file's values."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.loader import Config, ConfigError, load_config
from tests.support.stack import render_toml

SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
KEYS = {
    name: [f.name for f in dataclasses.fields(getattr(Config(), name))]
    for name in SECTIONS
    if dataclasses.is_dataclass(getattr(Config(), name))
}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=32),
    st.text(max_size=30), st.sampled_from(["09:35", "25:99", "paper", "live", "none", ""]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4))
section_names = st.sampled_from([*sorted(KEYS), "bogus"])


@st.composite
def config_dicts(draw: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section in draw(st.lists(section_names, max_size=4, unique=True)):
        keys = [*KEYS.get(section, ["x"]), "not_a_key"]
        out[section] = draw(st.dictionaries(st.sampled_from(keys), values, max_size=4))
    return out


def _load(path: Path | None, env: dict[str, str]) -> Config | ConfigError:
    try:
        return load_config(path, environ=env)
    except ConfigError as exc:
        assert str(exc), "a ConfigError must say what is wrong"
        return exc


@FUZZ
@given(data=config_dicts())
def test_any_config_file_loads_or_names_the_bad_key(tmp_path: Path,
                                                    data: dict[str, dict[str, Any]]) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(render_toml(data))
    result = _load(path, {})
    if isinstance(result, ConfigError):
        named = [f"{s}.{k}" for s, keys in data.items() for k in keys] + list(data)
        assert any(n in str(result) for n in named), str(result)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_file_text_loads_or_fails_cleanly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "text.toml"
    path.write_text(text)
    _load(path, {})


@FUZZ
@given(section=section_names, key=st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                          min_size=1, max_size=20),
       raw=st.text(max_size=40))
def test_any_environment_override_loads_or_names_the_key(tmp_path: Path, section: str,
                                                        key: str, raw: str) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[gateway]\nport = 4004\n')
    name = f"TRADING_BOT__{section.upper()}__{key.upper()}"
    result = _load(good, {name: raw})
    if isinstance(result, Config):
        assert result.gateway.port == 4004 or section == "gateway"
    # Either way the file itself still loads the same: nothing was written anywhere.
    assert load_config(good, environ={}).gateway.port == 4004
