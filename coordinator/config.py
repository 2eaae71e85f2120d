"""The coordinator's settings: a TOML file's [coordinator] table, LATITUDE_COORDINATOR_*, flags."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dns.exception
import dns.name

from coordinator.etcd import tls_server_name
from coordinator.region_hosts import RegionHosts
from latitude import leader_bounds
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.pki import CertFiles, Identity
from latitude.tls_config import check_tls

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class AlertTarget:
    """A webhook the leader posts incidents to (``[[coordinator.alerts]]``)."""

    # Where to POST the JSON notification (http or https).
    url: str
    # Only incidents at least this severe: info, warning or critical.
    min_severity: str = "warning"
    # Sent as "Authorization: Bearer <token>" when set.
    bearer_token: str = ""
    # 0: told of every incident at once. Otherwise an escalation target: told only of
    # incidents still open this many seconds after they opened (then of their updates and
    # their resolution).
    escalate_after: float = 0.0
    # How the target is named in logs and in ListIncidents; default: the URL's host and path.
    name: str = ""
    # Seconds one POST may take, connecting included.
    timeout: float = 5.0

    def validate(self, where: str = "alerts") -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where}.url: expected an http(s) URL, got {self.url!r}")
        if self.min_severity not in SEVERITIES:
            raise ConfigError(
                f"{where}.min_severity: expected one of {', '.join(SEVERITIES)}, "
                f"got {self.min_severity!r}"
            )
        if not self.escalate_after >= 0:
            raise ConfigError(f"{where}.escalate_after: must not be negative")
        if not 0 < self.timeout <= 60:
            raise ConfigError(f"{where}.timeout: must be within 0..60 s, got {self.timeout}")

    @property
    def label(self) -> str:
        """Its name, else its URL without credentials, query or fragment."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"

    @property
    def severity(self) -> int:
        """min_severity as a Severity value (1 info, 2 warning, 3 critical)."""
        return SEVERITIES.index(self.min_severity) + 1


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    # This replica's name, unique among coordinators.
    id: str = ""
    # host:port the gRPC server listens on.
    listen: str = "127.0.0.1:50051"
    # host:port agents and clients use to reach this replica (default: listen).
    advertise: str = ""
    # etcd client endpoints, host:port each.
    etcd: tuple[str, ...] = ("127.0.0.1:2379",)
    # Every key latitude writes lives under this prefix.
    etcd_prefix: str = "/latitude"
    # TLS to etcd, all three or none: the CA that signed the members' certificates, and this
    # coordinator's client certificate and key. With etcd's --client-cert-auth the
    # certificate's common name is the etcd user: no password anywhere.
    etcd_ca: Path | None = None
    etcd_cert: Path | None = None
    etcd_key: Path | None = None
    # With TLS, the name every member's certificate is checked against; empty: the host the
    # etcd endpoints share (endpoints on several hosts need it).
    etcd_server_name: str = ""
    # The regions this deployment has; a Hello for any other region is refused.
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-southeast-1")
    # Timing (seconds); see DESIGN.md.
    lease_ttl: int = 3
    report_interval: float = 0.5
    fence_after: float = 4.0
    suspect_after: float = 1.5
    fail_after: float = 3.0
    # The leader acknowledges every Nth report (agents fence on missing acknowledgements).
    ack_every: int = 2
    # How often the leader publishes region health to etcd (at most; changes go sooner).
    publish_interval: float = 1.0
    # A standby further behind than this is DEGRADED (and, later, not promoted automatically).
    lag_budget_bytes: int = 64 * 1024 * 1024
    lag_budget_seconds: float = 300.0
    # Synchronous replication: the leader keeps synchronous_standby_names on the primary at
    # ANY 1 (the streaming standbys), so an acknowledged commit is on a standby too, and
    # promotes only the standby with the most WAL received. With none streaming it falls
    # back to asynchronous (if synchronous_fallback) rather than blocking every commit.
    synchronous: bool = False
    synchronous_fallback: bool = True
    # Routing (see coordinator/routing/weights.py for what the numbers mean).
    # The cluster's default strategy until an operator sets one (AdminService.SetStrategy):
    # geographic, latency, weighted, round_robin or health_based.
    routing_strategy: str = "geographic"
    # Reads go only to replicas at most this far behind, unless a request says otherwise.
    read_lag_budget_seconds: float = 30.0
    # A recovered region takes its traffic back over this long, in steps.
    failback_ramp_seconds: float = 20.0
    # Panic routing below this share of total capacity able to take traffic.
    panic_threshold: float = 0.1
    # A region takes min(1, availability x this) of its nearby traffic before spilling.
    overprovisioning_factor: float = 1.4
    # Client-reported latencies kept for this many network prefixes (the most recent).
    latency_prefixes: int = 256
    # Measurement-only table changes (lag, utilisation, latencies) are published this often.
    measurement_interval: float = 2.0
    # Where clients of unknown location are taken to be, "latitude,longitude"; empty: where
    # the primary is.
    default_location: tuple[float, ...] = ()
    # Operator placement rules, "CIDR=latitude,longitude" each; the most specific prefix wins.
    location_overrides: tuple[str, ...] = ()
    # A MaxMind City database (.mmdb) for city-precision IP geolocation; empty: country
    # precision from the embedded IP-to-country data.
    geoip_city_database: str = ""
    # A region whose requests fail more often than this is DEGRADED.
    max_error_rate: float = 0.05
    # Largest message accepted from an agent.
    max_message_bytes: int = 256 * 1024
    # How long SIGTERM waits for streams to finish.
    shutdown_grace: float = 2.0
    # host:port of the HTTP listener: Prometheus metrics at /metrics, the dashboard at /.
    # Empty: no HTTP listener.
    http_address: str = ""
    # host:port (an IP address) of the authoritative DNS responder, UDP and TCP
    # (coordinator/dns/): the zone's names answered from the routing table. Empty: no DNS.
    dns_address: str = ""
    # The zone it is authoritative for; every other name is REFUSED.
    dns_zone: str = "latitude.test."
    # TTL (seconds) of the answers that come from the routing table, and of NXDOMAIN/NODATA.
    dns_ttl: int = 5
    # UDP responses per second per client network (/24, /56) and answer before the rest are
    # dropped or, every dns_rate_limit_slip-th, sent truncated (coordinator/dns/ratelimit.py);
    # 0: no limit. TCP is never limited.
    dns_rate_limit: float = 20.0
    # Every this-many-th limited response goes out truncated (a real client retries over TCP);
    # 0: all are dropped, 1: all are truncated.
    dns_rate_limit_slip: int = 2
    # Seconds a flood stays limited after it eases (the debt an account may run up).
    dns_rate_limit_window: float = 15.0
    # Webhooks told of incidents ([[coordinator.alerts]] tables; in the environment, a JSON
    # list of objects: LATITUDE_COORDINATOR_ALERTS='[{"url": "https://..."}]').
    alerts: tuple[AlertTarget, ...] = ()
    # One incident's updates reach a target at most this often (openings, escalations and
    # resolutions go at once).
    alert_update_interval: float = 5.0
    # Incidents below critical are told only once open this long: a blip that resolves sooner
    # (a standby streaming a moment late) is never sent.
    alert_hold: float = 10.0
    # An incident whose cause returns within this many seconds of its resolution reopens.
    incident_reopen_window: float = 300.0
    # Mutual TLS (tls_ca, tls_cert, tls_key: all three or none): the gRPC port requires a
    # client certificate from this CA and authorises each call by its role (latitude.authz);
    # channels to the leader and to agents present this certificate, which must say role
    # coordinator (latitude://role/coordinator). None: plaintext, and anyone who reaches the
    # port may change the cluster.
    tls: CertFiles | None = None
    # Bounds on what callers can make a coordinator hold or do (coordinator/limits.py).
    # Client-reported latencies: the prefixes one caller may hold (of latency_prefixes), and
    # reports a second per caller, with bursts.
    latency_prefixes_per_caller: int = 32
    latency_reports_per_second: float = 5.0
    latency_report_burst: int = 20
    # Concurrent streams (Watch; AgentService, counted apart) per caller and in all.
    streams_per_caller: int = 64
    streams_total: int = 4096
    # Serialized Resolve answers a replica keeps for the table it serves, in bytes.
    resolve_answer_bytes: int = 16 * 1024 * 1024

    # -- Trust in what agents report (issue 11) --
    # Where each region's services may be, "region=host" each: an IP address, a CIDR or a
    # DNS name (compared as written, not resolved); a region may appear many times, and once
    # one is listed every region must be. A Hello's endpoints and agent address must be on
    # its region's hosts, a Report's upstream on some region's. Empty: nothing is checked (a
    # warning at start). In TOML a list (region_hosts = ["eu-west-1=10.213.110.0/24"]); in
    # LATITUDE_COORDINATOR_REGION_HOSTS and --region-hosts, comma-separated.
    region_hosts: tuple[str, ...] = ()

    def validate(self) -> None:
        parse_host_port(self.listen, "listen", any_port=True)
        if self.advertise:
            parse_host_port(self.advertise, "advertise")
        if self.http_address:
            parse_host_port(self.http_address, "http_address", any_port=True)
        self._validate_dns()
        if not self.etcd:
            raise ConfigError("etcd: at least one endpoint is needed")
        for endpoint in self.etcd:
            parse_host_port(endpoint, "etcd")
        self._validate_etcd_tls()
        if not self.regions or len(set(self.regions)) != len(self.regions):
            raise ConfigError(f"regions: need distinct region names, got {list(self.regions)}")
        if not 1 <= self.ack_every <= 4:
            raise ConfigError(f"ack_every: must be within 1..4, got {self.ack_every}")
        if self.lease_ttl < 2:
            raise ConfigError(f"lease_ttl: must be at least 2 s, got {self.lease_ttl}")
        positive = (
            "report_interval",
            "fence_after",
            "suspect_after",
            "fail_after",
            "publish_interval",
            "lag_budget_seconds",
            "shutdown_grace",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.suspect_after > self.fail_after:
            raise ConfigError("suspect_after: must not exceed fail_after")
        if self.suspect_after <= self.report_interval:
            raise ConfigError("suspect_after: must exceed report_interval")
        if not 0 <= self.max_error_rate <= 1:
            raise ConfigError(f"max_error_rate: must be within 0..1, got {self.max_error_rate}")
        self._validate_routing()
        self._validate_alerts()
        if self.tls is not None:
            where = "advertise" if self.advertise else "listen"
            host, _ = parse_host_port(self.advertised, where, any_port=True)
            check_tls(self.tls, Identity("coordinator"), serves=(host, where))
        self._validate_limits()
        self.hosts  # noqa: B018 - parses and validates every rule
        # Agents believe no Welcome outside these: a coordinator set beyond them leads none.
        for name, bounds in (
            ("report_interval", leader_bounds.REPORT_INTERVAL),
            ("fence_after", leader_bounds.FENCE_AFTER),
        ):
            problem = leader_bounds.outside(name, getattr(self, name), bounds)
            if problem:
                raise ConfigError(f"{problem} (agents refuse a leader's Welcome beyond it)")

    def _validate_dns(self) -> None:
        if self.dns_address:
            host, _ = parse_host_port(self.dns_address, "dns_address", any_port=True)
            try:
                ipaddress.ip_address(host)
            except ValueError as err:
                raise ConfigError(
                    f"dns_address: the host must be an IP address to listen on, got {host!r}"
                ) from err
        try:
            dns.name.from_text(self.dns_zone)
        except dns.exception.DNSException as err:
            raise ConfigError(f"dns_zone: {self.dns_zone!r} is not a domain name ({err})") from err
        if not self.dns_zone.strip(".") or "*" in self.dns_zone:
            raise ConfigError(f"dns_zone: {self.dns_zone!r} is not a zone latitude can serve")
        if not 0 <= self.dns_ttl <= 86400:
            raise ConfigError(f"dns_ttl: must be within 0..86400 s, got {self.dns_ttl}")
        if not 0 <= self.dns_rate_limit <= 1e6:
            raise ConfigError(
                f"dns_rate_limit: must be within 0..1000000 responses/s, got {self.dns_rate_limit}"
            )
        if not 0 <= self.dns_rate_limit_slip <= 10:
            raise ConfigError(
                f"dns_rate_limit_slip: must be within 0..10, got {self.dns_rate_limit_slip}"
            )
        if not 1 <= self.dns_rate_limit_window <= 3600:
            raise ConfigError(
                f"dns_rate_limit_window: must be within 1..3600 s, got {self.dns_rate_limit_window}"
            )

    def _validate_etcd_tls(self) -> None:
        paths = {"etcd_ca": self.etcd_ca, "etcd_cert": self.etcd_cert, "etcd_key": self.etcd_key}
        given = [name for name, path in paths.items() if path is not None]
        if not given:
            if self.etcd_server_name:
                raise ConfigError("etcd_server_name: only means something with etcd_ca/cert/key")
            return
        missing = [name for name in paths if name not in given]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)}: TLS to etcd needs etcd_ca, etcd_cert and etcd_key "
                f"together (only {', '.join(given)} given)"
            )
        # Readable, the key's, signed by the CA, within its validity: a clear error now, not a
        # handshake etcd refuses later. Its CN is the etcd user, it names no latitude identity.
        check_tls(self.etcd_tls, None, setting="etcd")
        tls_server_name(self.etcd, self.etcd_server_name)

    @property
    def etcd_tls(self) -> CertFiles | None:
        """The etcd client certificate, key and CA; None for plaintext."""
        if self.etcd_ca is None or self.etcd_cert is None or self.etcd_key is None:
            return None
        return CertFiles(self.etcd_cert, self.etcd_key, self.etcd_ca)

    def _validate_limits(self) -> None:
        if not 1 <= self.latency_prefixes_per_caller <= 10_000:
            raise ConfigError(
                "latency_prefixes_per_caller: must be within 1..10000, "
                f"got {self.latency_prefixes_per_caller}"
            )
        if not (
            math.isfinite(self.latency_reports_per_second) and self.latency_reports_per_second > 0
        ):
            raise ConfigError(
                "latency_reports_per_second: must be a positive number, "
                f"got {self.latency_reports_per_second}"
            )
        if self.latency_report_burst < 1:
            raise ConfigError(
                f"latency_report_burst: must be at least 1, got {self.latency_report_burst}"
            )
        if not 1 <= self.streams_per_caller <= self.streams_total:
            raise ConfigError(
                f"streams_per_caller: must be within 1..streams_total ({self.streams_total}), "
                f"got {self.streams_per_caller}"
            )
        if not 0 <= self.resolve_answer_bytes <= 1 << 30:
            raise ConfigError(
                f"resolve_answer_bytes: must be within 0..1 GiB, got {self.resolve_answer_bytes}"
            )

    def _validate_alerts(self) -> None:
        for index, target in enumerate(self.alerts):
            target.validate(f"alerts[{index}]")
        labels = [t.label for t in self.alerts]
        for label in labels:
            if labels.count(label) > 1:
                raise ConfigError(f"alerts: two targets named {label!r} (give them a name)")
        for name in ("alert_update_interval", "alert_hold", "incident_reopen_window"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}: must not be negative, got {getattr(self, name)}")

    def _validate_routing(self) -> None:
        strategies = ("geographic", "latency", "weighted", "round_robin", "health_based")
        if self.routing_strategy not in strategies:
            raise ConfigError(
                f"routing_strategy: unknown strategy {self.routing_strategy!r} "
                f"(one of: {', '.join(strategies)})"
            )
        for name in ("read_lag_budget_seconds", "failback_ramp_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must not be negative, got {getattr(self, name)}")
        if not 0 <= self.panic_threshold < 1:
            raise ConfigError(f"panic_threshold: must be within 0..1, got {self.panic_threshold}")
        if not self.overprovisioning_factor >= 1:
            raise ConfigError(
                f"overprovisioning_factor: must be at least 1, got {self.overprovisioning_factor}"
            )
        if not 0 <= self.latency_prefixes <= 10_000:
            raise ConfigError(
                f"latency_prefixes: must be within 0..10000, got {self.latency_prefixes}"
            )
        if not self.measurement_interval > 0:
            raise ConfigError("measurement_interval: must be positive")
        if self.default_location:
            _location(self.default_location, "default_location")
        self.overrides  # noqa: B018 - parses and validates every rule

    @property
    def overrides(self) -> dict[str, tuple[float, float]]:
        """location_overrides as {CIDR: (latitude, longitude)}."""
        rules = {}
        for rule in self.location_overrides:
            prefix, sep, where = rule.partition("=")
            try:
                network = ipaddress.ip_network(prefix.strip(), strict=False)
                point = tuple(float(x) for x in where.split(","))
            except ValueError as err:
                raise ConfigError(
                    f"location_overrides: {rule!r} is not CIDR=latitude,longitude ({err})"
                ) from err
            if not sep:
                raise ConfigError(f"location_overrides: {rule!r} is not CIDR=latitude,longitude")
            rules[str(network)] = _location(point, f"location_overrides ({rule!r})")
        return rules

    @property
    def hosts(self) -> RegionHosts:
        """region_hosts, parsed."""
        return RegionHosts.parse(self.region_hosts, self.regions)

    @property
    def node_id(self) -> str:
        return self.id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def advertised(self) -> str:
        return self.advertise or self.listen


def _location(point, where: str) -> tuple[float, float]:
    if len(point) != 2:
        raise ConfigError(f"{where}: expected latitude,longitude, got {point!r}")
    lat, lon = point
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise ConfigError(f"{where}: latitude {lat} is outside -90..90")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise ConfigError(f"{where}: longitude {lon} is outside -180..180")
    return float(lat), float(lon)
