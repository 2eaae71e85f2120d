"""A network of its own for the local stack: each region, and the control plane, in a network
namespace of its own, joined by a Linux bridge; and links between them that can be cut.

```
 root namespace: the observer (tests, monitor, latitude status), 10.213.N.1 on the bridge
 bridge latXXXXXX ── netns lat-XXXXXX-control         10.213.N.2  etcd x3, coordinators x3
                  ── netns lat-XXXXXX-us-east-1       10.213.N.3  PostgreSQL, agent, ...
                  ── netns lat-XXXXXX-eu-west-1       10.213.N.4
                  ── netns lat-XXXXXX-ap-southeast-1  10.213.N.5
```

Names derive from the stack's cluster token, and each stack takes a /24 of 10.213.0.0/16 that
no bridge on this machine holds yet, so two stacks never collide. The layout is saved in the
stack's state file; ``create`` is idempotent, so ``up`` after a reboot (namespaces gone)
makes them again.

A cut is what a real partition looks like: packets vanish (nothing answers, not even a reset)
in both directions, established connections included, so peers find out by timing out. Each
party's namespace holds one nftables table listing the addresses it no longer hears from;
the table is rewritten whole (``nft -f`` is atomic) on every change.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from latitude.errors import StackError

CONTROL = "control"
OBSERVER = "observer"
# 10.213.0.0/16 is this project's: one /24 per stack.
_RANGE = ipaddress.ip_network("10.213.0.0/16")
_TABLE = "latitude_chaos"
_CONTROL_COMPONENTS = ("etcd-", "coordinator-")


@dataclass(frozen=True, slots=True)
class Party:
    name: str  # "control" or a region
    address: str
    netns: str
    veth: str  # the root namespace's end; the namespace's end is eth0


@dataclass(frozen=True, slots=True)
class Layout:
    id: str
    subnet: str  # "10.213.N.0/24"
    bridge: str
    observer: str  # the root namespace's address on the bridge
    parties: tuple[Party, ...]

    @classmethod
    def plan(cls, token: str, regions: Sequence[str], taken: Iterable[str] = ()) -> Layout:
        """The layout for a stack whose cluster token is ``token``: a /24 no address in
        ``taken`` (those of this machine) falls in."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        short = digest[:6]
        used = set()
        for address in taken:
            ip = ipaddress.ip_address(address)
            if ip in _RANGE:
                used.add(ip.packed[2])
        start = int(digest[6:8], 16)
        third = next((n for n in ((start + i) % 256 for i in range(256)) if n not in used), None)
        if third is None:
            raise StackError("every /24 of 10.213.0.0/16 is taken by another stack's bridge")
        base = f"10.213.{third}"
        names = [CONTROL, *regions]
        parties = tuple(
            Party(name, f"{base}.{i + 2}", f"lat-{short}-{name}", f"lat{short}v{i}")
            for i, name in enumerate(names)
        )
        return cls(short, f"{base}.0/24", f"lat{short}", f"{base}.1", parties)

    def party(self, name: str) -> Party:
        for party in self.parties:
            if party.name == name:
                return party
        known = ", ".join(p.name for p in self.parties)
        raise StackError(f"unknown party {name!r} in the stack's network: known are {known}")

    def party_of(self, component: str) -> Party:
        """Where a stack process runs: etcd and coordinators in the control plane's namespace,
        anything named after a region (postgres-R, agent-R, keeper-R, ...) in that region's."""
        base = component.split(".", 1)[0]
        if base.startswith(_CONTROL_COMPONENTS):
            return self.party(CONTROL)
        for party in self.parties:
            if party.name != CONTROL and base.endswith("-" + party.name):
                return party
        raise StackError(f"{component!r} belongs to no party of the stack's network")

    def address_of(self, component: str) -> str:
        return self.party_of(component).address

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "subnet": self.subnet,
            "bridge": self.bridge,
            "observer": self.observer,
            "parties": [
                {"name": p.name, "address": p.address, "netns": p.netns, "veth": p.veth}
                for p in self.parties
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> Layout:
        return cls(
            str(data["id"]),
            str(data["subnet"]),
            str(data["bridge"]),
            str(data["observer"]),
            tuple(Party(**{k: str(p[k]) for k in ("name", "address", "netns", "veth")})
                  for p in data["parties"]),
        )  # fmt: skip


def ruleset(blocked: Iterable[str], *, observer: str | None = None) -> str:
    """The nftables script for one party's namespace: drop everything arriving from
    ``blocked`` addresses (both directions are cut by the other side's table doing the same);
    with ``observer``, also what this party sends to the observer, whose root namespace holds
    no table of ours."""
    addresses = sorted(set(blocked) | ({observer} if observer else set()))
    elements = f" elements = {{ {', '.join(addresses)} }};" if addresses else ""
    lines = [
        f"table inet {_TABLE}",
        f"delete table inet {_TABLE}",
        f"table inet {_TABLE} {{",
        f"  set blocked {{ type ipv4_addr;{elements} }}",
        "  chain input {",
        "    type filter hook input priority -10; policy accept;",
        "    ip saddr @blocked drop",
        "  }",
    ]
    if observer:
        lines += [
            "  chain output {",
            "    type filter hook output priority -10; policy accept;",
            f"    ip daddr {observer} drop",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


class Network:
    """The namespaces, veths and bridge of one stack, and the links cut between its parties."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        # Unordered pairs of parties that do not hear each other; "observer" may be one.
        self._cuts: set[frozenset[str]] = set()

    # -- existence -----------------------------------------------------------------------

    def exists(self) -> bool:
        present = set(_netns_names())
        return _link_exists(self.layout.bridge) and all(
            p.netns in present for p in self.layout.parties
        )

    async def create(self) -> None:
        """Make whatever is missing (idempotent), and clear every cut."""
        await asyncio.to_thread(self._create)
        self._cuts.clear()

    def _create(self) -> None:
        layout = self.layout
        prefix = layout.subnet.split("/")[1]
        if not _link_exists(layout.bridge):
            _ip("link", "add", layout.bridge, "type", "bridge")
        if layout.observer not in _addresses(layout.bridge):
            _ip("addr", "add", f"{layout.observer}/{prefix}", "dev", layout.bridge)
        _ip("link", "set", layout.bridge, "up")
        present = set(_netns_names())
        for party in layout.parties:
            if party.netns not in present:
                _ip("netns", "add", party.netns)
            if not _link_exists(party.veth):
                _ip("link", "add", party.veth, "type", "veth", "peer", "name", "eth0",
                    "netns", party.netns)  # fmt: skip
            _ip("link", "set", party.veth, "master", layout.bridge, "up")
            inside = ["ip", "netns", "exec", party.netns, "ip"]
            _run([*inside, "link", "set", "lo", "up"])
            _run([*inside, "link", "set", "eth0", "up"])
            if party.address not in _addresses("eth0", party.netns):
                _run([*inside, "addr", "add", f"{party.address}/{prefix}", "dev", "eth0"])
            _run(["ip", "netns", "exec", party.netns, "nft", "-f", "-"], ruleset(()))

    def destroy(self) -> None:
        """Remove the namespaces (their veths go with them), the veths and the bridge."""
        present = set(_netns_names())
        for party in self.layout.parties:
            if party.netns in present:
                _run(["ip", "netns", "del", party.netns], check=False)
            if _link_exists(party.veth):
                _run(["ip", "link", "del", party.veth], check=False)
        if _link_exists(self.layout.bridge):
            _run(["ip", "link", "del", self.layout.bridge], check=False)

    def exec_prefix(self, component: str) -> list[str]:
        return ["ip", "netns", "exec", self.layout.party_of(component).netns]

    # -- cuts ------------------------------------------------------------------------------

    @property
    def cuts(self) -> set[frozenset[str]]:
        return set(self._cuts)

    async def cut(self, a: str, b: str) -> None:
        """Cut the link between parties ``a`` and ``b`` (either may be "observer")."""
        self._check(a, b)
        self._cuts.add(frozenset((a, b)))
        await self._apply({a, b} - {OBSERVER})

    async def heal(self, a: str, b: str) -> None:
        self._check(a, b)
        self._cuts.discard(frozenset((a, b)))
        await self._apply({a, b} - {OBSERVER})

    async def isolate(self, party: str, *, observer: bool = False) -> None:
        """Cut ``party`` from every other party (and from the observer if asked)."""
        self._check(party)
        others = [p.name for p in self.layout.parties if p.name != party]
        self._cuts.update(frozenset((party, o)) for o in others)
        if observer:
            self._cuts.add(frozenset((party, OBSERVER)))
        await self._apply({p.name for p in self.layout.parties})

    async def heal_all(self) -> None:
        self._cuts.clear()
        await self._apply({p.name for p in self.layout.parties})

    def blocked_for(self, party: str) -> tuple[list[str], str | None]:
        """What ``party``'s table drops: the other parties' addresses it is cut from, and the
        observer's address when it is cut from the observer."""
        blocked, observer = [], None
        for pair in self._cuts:
            if party not in pair:
                continue
            (other,) = pair - {party}
            if other == OBSERVER:
                observer = self.layout.observer
            else:
                blocked.append(self.layout.party(other).address)
        return blocked, observer

    async def _apply(self, parties: set[str]) -> None:
        async def one(name: str) -> None:
            blocked, observer = self.blocked_for(name)
            netns = self.layout.party(name).netns
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", netns, "nft", "-f", "-",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate(ruleset(blocked, observer=observer).encode())
            if proc.returncode != 0:
                raise StackError(f"nft in {netns} failed: {err.decode(errors='replace')}")

        await asyncio.gather(*(one(p) for p in sorted(parties)))

    def _check(self, *parties: str) -> None:
        for name in parties:
            if name != OBSERVER:
                self.layout.party(name)
        if len(parties) == 2 and parties[0] == parties[1]:
            raise StackError(f"cannot cut {parties[0]} from itself")


def machine_addresses() -> list[str]:
    """Every IPv4 address of the root namespace (to find a /24 no other stack holds)."""
    out = _run(["ip", "-4", "-o", "addr", "show"])
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]


def _netns_names() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_exists(name: str) -> bool:
    return (
        subprocess.run(
            ["ip", "link", "show", "dev", name], capture_output=True, check=False
        ).returncode
        == 0
    )


def _addresses(device: str, netns: str | None = None) -> list[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    out = _run([*prefix, "ip", "-4", "-o", "addr", "show", "dev", device], check=False)
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]


def _ip(*args: str) -> str:
    return _run(["ip", *args])


def _run(argv: list[str], stdin: str | None = None, *, check: bool = True) -> str:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError as err:
        raise StackError(
            f"{argv[0]} not found: the stack's network needs iproute2 and nftables "
            "(apt-get install iproute2 nftables)"
        ) from err
    if check and done.returncode != 0:
        raise StackError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout
