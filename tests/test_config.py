from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from storytool.config import LLMProvider, Settings, describe_settings_error


def make(**values) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class TestDefaults:
    def test_embedded_default_is_sqlite_under_the_data_folder(self, tmp_path: Path):
        settings = make(data_dir=tmp_path)
        assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path}/storytool.db"
        assert settings.is_sqlite

    def test_offline_provider_without_a_key(self):
        assert make().effective_llm_provider is LLMProvider.OFFLINE
        assert make(openai_api_key="sk-test").effective_llm_provider is LLMProvider.OPENAI

    def test_environment_variables_use_the_prefix(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("STORYTOOL_REFINE_MODEL", "my-refiner")
        monkeypatch.setenv("STORYTOOL_MAX_INPUT_CHARS", "123")
        settings = make()
        assert (settings.refine_model, settings.max_input_chars) == ("my-refiner", 123)


class TestWrongValues:
    def test_message_names_the_variable(self):
        with pytest.raises(ValidationError) as caught:
            make(max_input_chars=0, auth_mode="magic")
        message = describe_settings_error(caught.value)
        assert "STORYTOOL_MAX_INPUT_CHARS" in message
        assert "STORYTOOL_AUTH_MODE" in message

    def test_jwt_mode_needs_a_key(self):
        with pytest.raises(ValidationError, match="STORYTOOL_JWT_SECRET"):
            make(auth_mode="jwt")

    def test_start_up_stops_and_names_the_variable(self, tmp_path: Path):
        result = subprocess.run(
            [sys.executable, "-m", "storytool", "db", "upgrade"],
            env={"STORYTOOL_DB_POOL_SIZE": "-3", "STORYTOOL_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert "STORYTOOL_DB_POOL_SIZE" in result.stderr
