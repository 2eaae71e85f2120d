"""[[coordinator.alerts]]: the webhook targets, from a TOML file or the environment."""

from __future__ import annotations

import pytest

from coordinator.config import AlertTarget, CoordinatorConfig
from latitude import config as configuration
from latitude.errors import ConfigError


def load(tmp_path, text: str = "", env: dict | None = None) -> CoordinatorConfig:
    file = tmp_path / "coordinator.toml"
    file.write_text(text)
    return configuration.load(
        CoordinatorConfig,
        section="coordinator",
        env_prefix="LATITUDE_COORDINATOR_",
        file=file,
        env=env or {},
    )


def test_alert_targets_from_an_array_of_tables(tmp_path):
    config = load(
        tmp_path,
        """
[coordinator]
alert_update_interval = 2

[[coordinator.alerts]]
url = "https://hooks.example.com/latitude?key=secret"
min_severity = "critical"
bearer_token = "t0ken"

[[coordinator.alerts]]
url = "http://pager.example.com:8080/escalate"
escalate_after = 900
name = "pager"
""",
    )
    first, pager = config.alerts
    assert first == AlertTarget(
        url="https://hooks.example.com/latitude?key=secret",
        min_severity="critical",
        bearer_token="t0ken",
    )
    assert first.label == "https://hooks.example.com/latitude"  # no query: it may hold a key
    assert first.severity == 3
    assert pager.escalate_after == 900.0 and pager.label == "pager"
    assert config.alert_update_interval == 2.0


def test_alert_targets_from_the_environment_as_json(tmp_path):
    config = load(
        tmp_path,
        env={"LATITUDE_COORDINATOR_ALERTS": '[{"url": "http://127.0.0.1:9/x", "timeout": 1}]'},
    )
    assert config.alerts == (AlertTarget(url="http://127.0.0.1:9/x", timeout=1.0),)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('url = "ftp://x/y"', r"alerts\[0\]\.url: expected an http\(s\) URL"),
        ('url = "http://x/"\nmin_severity = "loud"', "min_severity: expected one of info"),
        ('url = "http://x/"\nescalate_after = -1', "escalate_after: must not be negative"),
        ('url = "http://x/"\ntimeout = 0', "timeout: must be within"),
        ('url = "http://x/"\nretries = 3', "no setting 'retries'"),
        ('min_severity = "info"', "url is required"),
        ('url = "http://x/"\nescalate_after = "soon"', "escalate_after: expected a number"),
    ],
)
def test_a_bad_alert_target_is_named(tmp_path, table, problem):
    with pytest.raises(ConfigError, match=problem):
        load(tmp_path, f"[[coordinator.alerts]]\n{table}\n")


def test_two_targets_with_one_name_are_refused(tmp_path):
    table = '[[coordinator.alerts]]\nurl = "http://x/a"\n'
    with pytest.raises(ConfigError, match="two targets named 'http://x/a'"):
        load(tmp_path, table + table)


def test_alerts_from_the_environment_must_be_json(tmp_path):
    with pytest.raises(ConfigError, match="LATITUDE_COORDINATOR_ALERTS: expected a JSON list"):
        load(tmp_path, env={"LATITUDE_COORDINATOR_ALERTS": "http://x/"})
    with pytest.raises(ConfigError, match="expected a list of tables"):
        load(tmp_path, env={"LATITUDE_COORDINATOR_ALERTS": '{"url": "http://x/"}'})
