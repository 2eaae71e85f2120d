"""HAProxy beside the stack: the rendered configuration, its stats as read back, and which
processes and ports a stack with HAProxy has. HAProxy itself runs in
tests/integration/test_haproxy.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from latitude import cli
from latitude.errors import ConfigError, MissingBinaryError
from latitude.stack import haproxy
from latitude.stack.config import StackConfig
from latitude.stack.services import port_owner
from latitude.stack.stack import Stack
from latitude.stack.state import StackState

BACKENDS = [
    haproxy.Backend("us-east-1", "127.0.0.1:5432", "127.0.0.1", 8008),
    haproxy.Backend("eu-west-1", "127.0.0.1:5433", "127.0.0.1", 8009),
]
LISTEN = {"write": "127.0.0.1:6000", "read": "127.0.0.1:6001", "stats": "127.0.0.1:6002"}


def rendered(**overrides) -> str:
    settings = {
        "write": LISTEN["write"],
        "read": LISTEN["read"],
        "stats": LISTEN["stats"],
        "backends": BACKENDS,
    }
    return haproxy.render(haproxy.template_text(), **(settings | overrides))


def listener(config: str, name: str) -> list[str]:
    """The lines of one ``listen`` section, comments left out."""
    lines = config.splitlines()
    start = lines.index(f"listen {name}")
    section = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        section.append(line.strip())
    return section


def test_the_write_listener_checks_primary_and_the_read_listener_replica_with_a_lag_bound():
    config = rendered(read_lag="10s")
    write, read = listener(config, "write"), listener(config, "read")
    assert "bind 127.0.0.1:6000" in write
    assert "http-check send meth GET uri /primary" in write
    assert "bind 127.0.0.1:6001" in read
    assert "http-check send meth GET uri /replica?lag=10s" in read
    servers = [
        "server us-east-1 127.0.0.1:5432 check addr 127.0.0.1 port 8008",
        "server eu-west-1 127.0.0.1:5433 check addr 127.0.0.1 port 8009",
    ]
    assert [line for line in write if line.startswith("server ")] == servers
    assert [line for line in read if line.startswith("server ")] == servers
    assert "bind 127.0.0.1:6002" in listener(config, "stats")
    assert "$" not in config


def test_sessions_to_a_region_marked_down_are_cut_and_checks_are_fast():
    defaults = next(
        line for line in rendered().splitlines() if line.strip().startswith("default-server")
    )
    words = defaults.split()
    assert "on-marked-down" in words and words[words.index("on-marked-down") + 1] == (
        "shutdown-sessions"
    )
    assert words[words.index("inter") + 1] == "500ms"
    assert int(words[words.index("fall") + 1]) <= 3
    assert int(words[words.index("rise") + 1]) <= 2


@pytest.mark.parametrize("lag", ["16MB", "512kB", "10s", "1.5s", "250ms"])
def test_lag_bounds_in_the_agents_syntax_are_accepted(lag: str):
    assert f"/replica?lag={lag}\n" in rendered(read_lag=lag)


@pytest.mark.parametrize("lag", ["", "ten", "16MB\n    server evil 1.2.3.4:5", "-1s", "3m"])
def test_a_bad_lag_bound_is_refused_by_name(lag: str):
    with pytest.raises(ConfigError, match=r"read lag bound: lag=.*expected a size such as 16MB"):
        rendered(read_lag=lag)


@pytest.mark.parametrize("lag", ["16 MB", " 16MB", "16\tMB"])
def test_a_lag_bound_with_spaces_cannot_go_into_a_url(lag: str):
    with pytest.raises(ConfigError, match="without spaces"):
        rendered(read_lag=lag)


def test_a_region_name_that_cannot_name_a_server_is_refused():
    bad = [haproxy.Backend("us east", "127.0.0.1:5432", "127.0.0.1", 8008)]
    with pytest.raises(ConfigError, match="region name 'us east' cannot name a server"):
        rendered(backends=bad)


def test_no_regions_is_refused():
    with pytest.raises(ConfigError, match="no regions"):
        rendered(backends=[])


def test_a_template_field_latitude_does_not_fill_is_named():
    with pytest.raises(ConfigError, match="does not fill.*'colour'"):
        haproxy.render(
            "bind ${write_bind}\n${colour}\n",
            write="a",
            read="b",
            stats="c",
            backends=BACKENDS,
        )


def test_write_config_puts_the_rendered_template_in_the_stack(tmp_path: Path):
    config = haproxy.write_config(tmp_path / "haproxy", LISTEN, BACKENDS)
    assert config == tmp_path / "haproxy" / "haproxy.cfg"
    assert config.read_text() == rendered()


# The head of what HAProxy 2.6 (Debian 12) serves at /;csv, cut after its status column.
STATS_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
    "wretr,wredis,status\n"
)
STATS_CSV = (
    STATS_HEADER
    + """\
write,FRONTEND,,,0,0,2000,0,0,0,0,0,0,,,,,OPEN
write,us-east-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP
write,eu-west-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN
write,ap-southeast-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2
write,BACKEND,0,0,0,0,200,0,0,0,0,0,,0,0,0,0,UP
read,FRONTEND,,,0,0,2000,0,0,0,0,0,0,,,,,OPEN
read,us-east-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2
read,eu-west-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT
read,BACKEND,0,0,0,0,200,0,0,0,0,0,,0,0,0,0,DOWN
stats,FRONTEND,,,0,0,2000,0,0,0,0,0,0,,,,,OPEN
stats,BACKEND,0,0,0,0,200,0,0,0,0,0,,0,0,0,0,UP
"""
)


def test_stats_name_the_servers_up_in_each_listener():
    """A server still up but failing its checks ("UP 1/2") is up: HAProxy still sends to it."""
    assert haproxy.parse_stats(STATS_CSV) == {
        "write": ["us-east-1", "ap-southeast-1"],
        "read": [],
    }


def test_a_missing_haproxy_says_how_to_install_it():
    with pytest.raises(MissingBinaryError, match=r"apt-get install haproxy"):
        haproxy.binary("no-such-haproxy-here")


async def test_up_names_a_missing_haproxy_before_it_starts_anything(tmp_path: Path):
    stack = Stack(StackConfig(dir=tmp_path / "stack", haproxy=True, haproxy_bin="no-haproxy"))
    with pytest.raises(MissingBinaryError, match="HAProxy not found"):
        await stack.up()
    assert not (tmp_path / "stack").exists()


def test_haproxy_is_the_last_process_started_and_its_ports_belong_to_it():
    stack = Stack(StackConfig(haproxy=True))
    assert stack.component_names()[-1] == haproxy.COMPONENT
    assert set(haproxy.PORT_NAMES) <= set(stack._port_names())
    assert {port_owner(name) for name in haproxy.PORT_NAMES} == {haproxy.COMPONENT}
    assert haproxy.COMPONENT not in Stack(StackConfig()).component_names()


def test_a_stack_that_has_haproxy_keeps_it_without_the_flag(tmp_path: Path):
    """``up`` and ``down`` without --haproxy still start and stop the HAProxy a stack has."""
    ports = dict.fromkeys(haproxy.PORT_NAMES, 6000)
    state = StackState(dir=tmp_path, host="127.0.0.1", ports=ports)
    stack = Stack(StackConfig())
    assert stack.has_haproxy(state)
    assert stack.component_names(state)[-1] == haproxy.COMPONENT
    assert not stack.has_haproxy(StackState(dir=tmp_path, host="127.0.0.1", ports={}))


def test_haproxy_needs_the_control_plane_and_the_root_namespace():
    assert not Stack(StackConfig(haproxy=True, control_plane=False)).has_haproxy()
    with pytest.raises(ConfigError, match="haproxy: not with netns"):
        StackConfig(haproxy=True, netns=True).validate()


def test_up_haproxy_sets_the_stack_setting_and_status_shows_the_listeners():
    args = cli._parser().parse_args(["up", "--haproxy", "--dir", "/tmp/x"])
    assert cli._stack(args).config.haproxy
    args = cli._parser().parse_args(["up", "--dir", "/tmp/x"])
    assert not cli._stack(args).config.haproxy
    shown = cli.format_haproxy(LISTEN)
    assert "writes 127.0.0.1:6000" in shown and "reads 127.0.0.1:6001" in shown
    assert "http://127.0.0.1:6002/" in shown
    assert cli.format_haproxy({}) == ""
