"""Every server setting is documented where operators look for it."""

from __future__ import annotations

from pathlib import Path

from voicebot.config import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme_table():
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `")]
    missing = [
        ENV_PREFIX + name.upper()
        for name in Settings.model_fields
        if not any(f"`{ENV_PREFIX}{name.upper()}`" in row for row in rows)
    ]
    assert not missing, f"settings missing from README.md's configuration table: {missing}"


def test_every_setting_has_a_description():
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undocumented


def test_api_clients_are_parsed_and_bad_entries_explained():
    import pytest

    from voicebot.config import Settings

    settings = Settings(api_clients="acme=0123456789abcdef, beta = fedcba9876543210")
    assert settings.api_client_tokens() == {"acme": "0123456789abcdef", "beta": "fedcba9876543210"}
    for bad in ("acme", "acme=short", "a b=0123456789abcdef", "admin=0123456789abcdef"):
        with pytest.raises(ValueError, match="VOICEBOT_API_CLIENTS"):
            Settings(api_clients=bad).api_client_tokens()


def test_inconsistent_turn_settings_stop_the_start_naming_the_variables():
    import pytest

    from voicebot.config import ConfigError
    from voicebot.services import Services

    with pytest.raises(ConfigError, match="VOICEBOT_TURN_END_SECS <= VOICEBOT_TURN_MAX_SILENCE"):
        Settings.from_env({"VOICEBOT_TURN_END_SECS": "1.5"})
    with pytest.raises(ConfigError, match="VOICEBOT_TURN_HESITANT_THRESHOLD must not exceed"):
        Settings.from_env({"VOICEBOT_TURN_HESITANT_THRESHOLD": "0.9"})
    with pytest.raises(ConfigError, match="VOICEBOT_TURN_HESITANT_END_SECS: Input should be"):
        Settings.from_env({"VOICEBOT_TURN_HESITANT_END_SECS": "-1"})
    # The unsure-verdict wait stays between the two others rather than refusing to start.
    settings = Settings.from_env({"VOICEBOT_TURN_MAX_SILENCE_SECS": "0.4"})
    assert Services(settings).turn_config.hesitant_end_secs == 0.4
