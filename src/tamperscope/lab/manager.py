"""Bringing the lab up and down: namespaces, links, routes, processes, state.

State lives in one directory (default /run/tamperscope-lab, or
$TAMPERSCOPE_LAB_STATE): state.json (profile, pids, status), the CAs, the
ground-truth log, the service logs. `down` needs nothing but the `ts-`
prefix: it kills every process in every `ts-` namespace, deletes the
namespaces (and with them every link), and removes the state directory, so it
cleans up after a crash or a `kill -9` as well as after a normal run. `up`
refuses to start over a healthy lab and silently clears a stale one (a
session killed while its lab was up leaves namespaces behind). `up(...,
switch=True)` gives a healthy lab another profile by restarting only the
services that read it (`PROFILED`).

The state directory is the lab's alone: `up` marks it (`MARK`), and neither command removes a directory that
holds anything without that mark or a state.json (TAMPERSCOPE_LAB_STATE=$HOME must not lose $HOME). Two
commands that change the lab (`up`, `up --switch`, `down`) take turns (`exclusive`, a lock beside the directory),
and SIGTERM during `up` takes down what was made, as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from ..model.profile import Profile, ProfileError, load_profile
from ..nettests.base import residual_state_path
from . import addresses as A
from . import blockpages, farm, tornet
from .ca import create_ca

STATE_DIR = Path(os.environ.get("TAMPERSCOPE_LAB_STATE", "/run/tamperscope-lab"))
NETNS_ETC = Path("/etc/netns")
RUN_NETNS = Path("/run/netns")
READY_TIMEOUT = 20.0
READY_PER_MIB = 15.0  # more seconds per MiB of profile: each service parses it (a 4 MiB one took 23 s to come up)
MARK = ".tamperscope-lab"  # in the state directory: it is the lab's, and down may remove it
LOCK_WAIT = 120.0          # seconds a lab command waits for another to finish (an up takes 3-25 s)
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # started by this process: reaped on down()


class LabError(Exception):
    """A lab operation cannot be done; the message is one line for the user."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        return self.root / "groundtruth.jsonl"

    @property
    def ca_bundle(self) -> Path:
        return self.root / "ca" / "lab-ca.pem"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tor_targets(self) -> Path:
        return self.root / "tor-targets.json"

    @property
    def wg_config(self) -> Path:
        return self.root / "wireguard-client.conf"

    @property
    def tor_network(self) -> Path:
        return self.root / "tor-network.torrc"

    @property
    def tornet(self) -> Path:
        """The lab's Tor network's directory: each of its tors' home (`lab.tornet`)."""
        return self.root / tornet.DIRECTORY

    @property
    def tor_bridges(self) -> Path:
        """The lab's Tor network's bridge line (`lab.tornet`): for ``vanilla_tor --tor-bridges``."""
        return self.root / "tor-bridges.txt"


PATHS = Paths(STATE_DIR)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces); run as root, e.g. with sudo", 2)
    if shutil.which("ip") is None:
        raise LabError("the lab needs iproute2's `ip` command; run `make setup`", 2)


def builtin_profiles() -> dict[str, Path]:
    base = resources.files("tamperscope.lab") / "profiles"
    return {p.name[:-5]: Path(str(p)) for p in base.iterdir() if p.name.endswith(".toml")}


def resolve_profile(spec: str) -> Profile:
    """A built-in profile name or a path to a TOML file, validated."""
    builtins = builtin_profiles()
    if spec in builtins:
        path = builtins[spec]
    else:
        path = Path(spec)
        try:
            exists = spec != "" and path.exists()
        except (OSError, ValueError):  # a name too long for the file system
            exists = False
        if not exists:
            raise LabError(f"no built-in profile or file {spec[:200]!r} (built-in: {', '.join(sorted(builtins))})", 2)
    try:
        profile = load_profile(path.resolve(), blockpages.names())
    except ProfileError as e:
        raise LabError(str(e), 2) from None
    _check_regexes(profile)
    return profile


def _check_regexes(profile: Profile) -> None:
    """The censor runs each rule's regex over names from hostile traffic (Host headers, SNIs, DNS queries):
    one that can backtrack exponentially, like (a+)+$, would stall it on a crafted name, and so would one with
    three unbounded quantifiers or more, like .*a.*a.*c (polynomially: every packet of the lab waited while a
    Host of 130 a's was searched). Refused, as the fingerprint matcher refuses them; the names themselves are
    cut at `model.profile.MAX_NAME`."""
    if not any(r.regex for r in profile.rules):
        return
    from ..wire.patterns import backtracking_risk, polynomial_risk

    for i, r in enumerate(profile.rules):
        if not r.regex:
            continue
        if (why := backtracking_risk(r.regex)) is not None:
            raise LabError(f"{profile.source}: rule[{i}] ({r.id}).regex: may backtrack exponentially on a crafted "
                           f"name ({why}); write it without nested or overlapping repeats, or use domains "
                           "with suffix = true", 2)
        if (why := polynomial_risk(r.regex)) is not None:
            raise LabError(f"{profile.source}: rule[{i}] ({r.id}).regex: may backtrack for minutes on a crafted "
                           f"name ({why}); use two at most, or domains with suffix = true", 2)


def _run(*cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and res.returncode != 0:
        raise LabError(f"`{' '.join(cmd[:6])}…` failed: {_why(res.stderr) or res.returncode}")
    return res


def _why(stderr: str) -> str:
    """A failed command's words, on one line: ``ip -batch`` says why first ("Cannot create namespace file …:
    File exists") and only then "Command failed -:2", which alone says nothing (QA)."""
    said = " / ".join(line.strip() for line in stderr.splitlines() if line.strip())
    return said if len(said) <= 400 else "…" + said[-400:]


_HELD = threading.local()


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One command changing the lab at a time (QA: two `lab up` at once left no lab, a traceback, or a
    nameless namespace whose services outlived every `lab down`). The lock is a file beside the state directory
    (which `down` removes); this process may take it again while it holds it (up calls down)."""
    if getattr(_HELD, "depth", 0):
        _HELD.depth += 1
        try:
            yield
        finally:
            _HELD.depth -= 1
        return
    lock = PATHS.root.parent / f"{PATHS.root.name}.lock"
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise LabError(f"cannot open the lab's lock {lock}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + LOCK_WAIT
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another lab command has been running for {LOCK_WAIT:.0f} s (its lock is "
                                   f"{lock}); try again when it is done", 2) from None
                if not said:
                    print("lab: waiting for another lab command to finish", file=sys.stderr)
                    said = True
                time.sleep(0.1)
        _HELD.depth = 1
        try:
            yield
        finally:
            _HELD.depth = 0
    finally:
        os.close(fd)


def _foreign(root: Path) -> bool:
    """Whether ``root`` is a directory holding something, and neither the lab's mark nor a state.json: not the
    lab's, so no command removes it (QA: TAMPERSCOPE_LAB_STATE=/tmp/v, and `lab down` removed /tmp/v)."""
    if root.is_symlink() or not root.is_dir():
        return False
    try:
        return any(True for _ in root.iterdir()) and not (root / MARK).exists() and not (root / "state.json").exists()
    except OSError:
        return True


def _refuse_foreign() -> None:
    if _foreign(PATHS.root):
        raise LabError(f"{PATHS.root} holds files that are not the lab's (no {MARK} in it): the lab's directory "
                       "(TAMPERSCOPE_LAB_STATE) must be a new or empty one; nothing was removed", 2)


def lab_namespaces() -> list[str]:
    res = _run("ip", "netns", "list", check=False)
    names = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(A.PREFIX)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_state() -> dict[str, Any] | None:
    """state.json, or None when there is none or it is not one this module wrote (a stale lab, then)."""
    try:
        st = json.loads(PATHS.state.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(st, dict) or not isinstance(st.get("pids", {}), dict):
        return None
    if not all(type(pid) is int and pid > 1 for pid in st.get("pids", {}).values()):
        return None
    return st


def _ours(pid: int) -> bool:
    """Whether `pid` runs one of the lab's programs. The pids of a lab killed long ago may since name other
    processes (a user's shell, as a session leader): `down` must not kill them, nor `is_up` take them
    for the lab."""
    if pid in _CHILDREN:
        return True
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # `ip netns exec ts-… python -m tamperscope.…`, before and after ip execs the interpreter
    if args[:3] == [b"ip", b"netns", b"exec"]:
        return len(args) > 3 and args[3].startswith(A.PREFIX.encode())
    return len(args) > 2 and args[1] == b"-m" and args[2].startswith(b"tamperscope.")


def is_up() -> bool:
    st = read_state()
    if not st or st.get("status") != "up":
        return False
    pids = st.get("pids", {})
    return bool(pids) and all(_alive(p) and _ours(p) for p in pids.values()) and \
        set(A.NAMESPACES) <= set(lab_namespaces())


# -- down ---------------------------------------------------------------

def _forget_holds() -> None:
    """The censor (re)starts or stops: what a probe run left the next about its residual holds is over."""
    try:
        residual_state_path().unlink(missing_ok=True)
    except OSError:
        pass


def down(quiet: bool = False) -> list[str]:
    """Remove everything the lab made. Returns what it removed (for messages and tests)."""
    require_root()
    _refuse_foreign()
    with exclusive():
        return _down()


def _down() -> list[str]:
    _forget_holds()
    removed: list[str] = []
    st = read_state()
    pids = [pid for pid in (st or {}).get("pids", {}).values() if _ours(pid)]
    _stop(pids)
    for ns in lab_namespaces():  # whatever else runs there (a service's children, a test's clients)
        res = _run("ip", "netns", "pids", ns, check=False)
        for tok in res.stdout.split():
            try:
                os.kill(int(tok), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
    _stop(list(_CHILDREN))
    for ns in lab_namespaces():
        if _run("ip", "netns", "del", ns, check=False).returncode != 0:
            # not a namespace ip can delete: a file or a directory left in /run/netns under a lab name, which
            # made every later `lab up` fail (QA)
            if not os.path.ismount(RUN_NETNS / ns):
                with contextlib.suppress(OSError):
                    _remove(RUN_NETNS / ns)
            if os.path.lexists(RUN_NETNS / ns):
                continue
        removed.append(f"netns {ns}")
    # links that somehow landed in the root namespace
    res = _run("ip", "-o", "link", "show", check=False)
    for line in res.stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(A.PREFIX):
            _run("ip", "link", "del", "dev", name, check=False)
            removed.append(f"link {name}")
    for path in [*_netns_etc(), PATHS.root]:
        if _remove(path):
            removed.append(str(path))
    for sock in Path("/var/run/wireguard").glob(f"{A.WIREGUARD_DEVICE}*.sock"):  # wireguard-go's, left if killed
        sock.unlink(missing_ok=True)
        removed.append(str(sock))
    return removed


def _netns_etc() -> list[Path]:
    """The lab's files for `ip netns exec` (/etc/netns/ts-*: what it mounts over /etc), its namespaces' and any
    other ts- name's."""
    try:
        return sorted({*(NETNS_ETC / ns for ns in A.NAMESPACES),
                       *(p for p in NETNS_ETC.iterdir() if p.name.startswith(A.PREFIX))})
    except OSError:
        return [NETNS_ETC / ns for ns in A.NAMESPACES]


def _remove(path: Path) -> bool:
    """Remove ``path`` whatever it is (a directory, a file or a link left in its place, which rmtree leaves);
    whether there was something to remove."""
    if not os.path.lexists(path):
        return False
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return True


def _stop(pids: list[int], sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to the process group of each of ``pids``, wait up to 2 s for them to go, then SIGKILL; the
    ones this process started are reaped."""
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 2.0
    while pids and time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass


# -- up -----------------------------------------------------------------

def _topology_batch() -> str:
    lines = []
    for ns in A.NAMESPACES:
        lines.append(f"netns add {ns}")
    for nsa, da, nsb, db in A.LINKS:
        lines.append(f"link add {da} netns {nsa} type veth peer name {db} netns {nsb}")
    return "\n".join(lines) + "\n"


def _ns_batch(ns: str, cmds: list[str]) -> None:
    _run("ip", "-n", ns, "-batch", "-", input="\n".join(cmds) + "\n")


def _configure() -> None:
    _run("ip", "-batch", "-", input=_topology_batch())
    # before any link is up: an IPv6 link-local address would send its duplicate-address probe and MLD reports
    # first (QA's suspicion; they stay on the lab's links, but the lab sends nothing it does not need)
    common = "net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0"
    router = "net.ipv4.ip_forward=1 net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000"
    for ns in A.NAMESPACES:
        extra = router if ns in (A.NS_ACCESS, A.NS_BORDER) else ""
        _run("ip", "netns", "exec", ns, "sysctl", "-qw", *f"{common} {extra}".split())

    def up(*devs: str) -> list[str]:
        return [f"link set dev {d} up" for d in ("lo", *devs)]

    _ns_batch(A.NS_CLIENT, [f"addr add {A.CLIENT}/24 dev ts-c0", *up("ts-c0"), f"route add default via {A.ACCESS_LAN}"])
    _ns_batch(A.NS_ACCESS, [
        f"addr add {A.ACCESS_LAN}/24 dev ts-a0", f"addr add {A.ISP_RESOLVER}/24 dev ts-a0",
        f"addr add {A.ISP_WEB}/24 dev ts-a0", f"addr add {A.ISP_BLOCKPAGE}/24 dev ts-a0",
        f"addr add {A.ACCESS_UP}/24 dev ts-a1", *up("ts-a0", "ts-a1"), f"route add default via {A.BORDER_DOWN}"])
    _ns_batch(A.NS_CENSOR, [*up("ts-z0", "ts-z1")])
    _ns_batch(A.NS_BORDER, [
        f"addr add {A.BORDER_DOWN}/24 dev ts-b0", f"addr add {A.BORDER_UP}/24 dev ts-b1", f"addr add {A.BORDER_OUT}/24 dev ts-b2",
        *up("ts-b0", "ts-b1", "ts-b2"), f"route add 198.18.1.0/24 via {A.ACCESS_UP}", f"route add {A.INET_NET} via {A.INET_LINK}"])
    _ns_batch(A.NS_INET, [f"addr add {A.INET_LINK}/24 dev ts-i0", *up("ts-i0"), f"route add default via {A.BORDER_UP}",
                          f"route add local {A.INET_NET} dev lo"])
    _ns_batch(A.NS_OUTSIDE, [f"addr add {A.OUTSIDE}/24 dev ts-o0", *up("ts-o0"), f"route add default via {A.BORDER_OUT}"])
    # The bridge relays frames itself: checksums and segmentation must be finished in software.
    for ns, dev in ((A.NS_ACCESS, "ts-a1"), (A.NS_CENSOR, "ts-z0"), (A.NS_CENSOR, "ts-z1"), (A.NS_BORDER, "ts-b0")):
        _run("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off")


def _nft_inet() -> None:
    """portquiz.net's every port (`addresses.PORTQUIZ`) to the web farm's port 80, for connections arriving from
    the network (prerouting) and from ts-inet itself (output: the control helper runs there)."""
    rule = f"ip daddr {A.PORTQUIZ} tcp dport != 80 dnat to {A.PORTQUIZ}:80"
    script = ("table ip ts_ports {\n"
              f" chain pre {{\n  type nat hook prerouting priority dstnat; policy accept;\n  {rule}\n }}\n"
              f" chain out {{\n  type nat hook output priority -100; policy accept;\n  {rule}\n }}\n}}\n")
    _run("ip", "netns", "exec", A.NS_INET, "nft", "-f", "-", input=script)


def _nft_border(profile: Profile) -> bool:
    rules = []
    if profile.proxy.enabled:
        rules.append(f'iifname "ts-b0" ip daddr {A.INET_NET} tcp dport 80 redirect to :8080')
    if any(r.action == "mitm" for r in profile.rules_for("tls")):
        rules.append(f'iifname "ts-b0" ip daddr {A.INET_NET} tcp dport 443 redirect to :8443')
    if not rules:
        return False
    script = "table ip ts_intercept {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n" + \
        "".join(f"  {r}\n" for r in rules) + " }\n}\n"
    _run("ip", "netns", "exec", A.NS_BORDER, "nft", "-f", "-", input=script)
    return True


def _spawn(ns: str, name: str, args: list[str]) -> int:
    PATHS.logs.mkdir(parents=True, exist_ok=True)
    out = open(PATHS.logs / f"{name}.log", "ab")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    out.close()
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _write_state(st: dict[str, Any]) -> None:
    tmp = PATHS.state.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(st, indent=1))
    tmp.replace(PATHS.state)


class _Terminated(LabError):
    """SIGTERM came while the lab was being changed (`timeout lab up`, a service manager's stop)."""


@contextlib.contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM, while the lab is changed, as an exception: what was made is taken down (`_give_up`), as Ctrl-C
    does (QA: `timeout 1.5 lab up` left six namespaces and 14 processes). Outside the main thread, as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise _Terminated("stopped by SIGTERM: what the lab had made is removed", 128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def up(spec: str, switch: bool = False) -> dict[str, Any]:
    """Bring the lab up with a profile; returns the state. Never leaves half a lab. With ``switch``, a lab
    that is up changes its profile instead (`_switch`)."""
    require_root()
    profile = resolve_profile(spec)
    _refuse_foreign()
    with exclusive(), _terminable():
        return _up(profile, switch)


def _up(profile: Profile, switch: bool) -> dict[str, Any]:
    _forget_holds()
    if is_up():
        old = read_state() or {}
        if switch:
            return _switch(profile, old)
        raise LabError(f"the lab is already up (profile {old.get('profile')!r}, since {old.get('started')}); "
                       "run `tamperscope lab down` first, or `lab up --switch`", 2)
    # a stale lab: namespaces, the state directory, or files for `ip netns exec` (a hosts or resolv.conf left
    # there would be mounted over the new lab's /etc: QA)
    stale = lab_namespaces() or os.path.lexists(PATHS.root) or any(os.path.lexists(p) for p in _netns_etc())
    if stale:
        _down()
        print("lab: cleared a stale lab left by an earlier run", file=sys.stderr)
    try:
        PATHS.root.mkdir(parents=True, exist_ok=True)
        (PATHS.root / MARK).touch()
    except OSError as exc:  # a file in the way that could not be removed, a read-only /run
        raise LabError(f"cannot make the lab's directory {PATHS.root}: {exc.strerror or exc}") from None
    os.chmod(PATHS.root, 0o755)
    st: dict[str, Any] = {"status": "starting", "profile": profile.name, "profile_path": profile.source,
                          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "log_path": str(PATHS.log),
                          "ca_bundle": str(PATHS.ca_bundle), "pids": {}}
    _write_state(st)
    try:
        _configure()
        create_ca(PATHS.root / "ca", "lab-ca", "tamperscope lab root CA", "tamperscope lab")
        create_ca(PATHS.root / "ca", "intercept-ca", "Lab Secure Gateway CA", "Interception Equipment Ltd")
        # RiseupVPN's own CA (its API's and gateways' certificates): no client trusts it until it fetches it
        create_ca(PATHS.root / "ca", "riseup-ca", "Riseup Networks Root CA (lab stand-in)", "Riseup Networks")
        PATHS.log.touch()
        bridge = shutil.which("obfs4proxy") is not None  # `make setup` installs it; without it, no obfs4 bridge
        if not bridge:
            print("lab: obfs4proxy is not installed (run `make setup`): the lab has no obfs4 bridge", file=sys.stderr)
        PATHS.tor_targets.write_text(json.dumps(farm.tor_targets(bridge), indent=1) + "\n")
        gateway = bridge and shutil.which("openvpn") is not None
        if not gateway:
            print("lab: openvpn or obfs4proxy is not installed (run `make setup`): the lab's RiseupVPN gateway is down",
                  file=sys.stderr)
        wireguard = shutil.which("wireguard-go") is not None and shutil.which("wg") is not None
        if not wireguard:
            print("lab: wireguard-go or wg is not installed (run `make setup`): the lab has no WireGuard server",
                  file=sys.stderr)
        tor = shutil.which("tor") is not None and shutil.which("tor-gencert") is not None
        if not tor:
            print("lab: tor is not installed (run `make setup`): the lab has no Tor network", file=sys.stderr)
        PATHS.wg_config.write_text(farm.wireguard_client_config())
        PATHS.wg_config.chmod(0o600)
        _write_resolv_conf(profile)
        _nft_inet()
        border = _nft_border(profile)
        _write_state(st)
        pids = st["pids"]
        state_arg = ["--state", str(PATHS.root)]
        pids.update(_spawn_profiled(profile, border))
        helper = _helper_command()
        if helper is not None:
            pids["helper"] = _spawn(A.NS_INET, "helper", helper)
        if bridge:
            pids["obfs4"] = _spawn(A.NS_INET, "obfs4", ["-m", "tamperscope.lab.services", "obfs4", *state_arg])
        if gateway:
            pids["gateway"] = _spawn(A.NS_INET, "gateway", ["-m", "tamperscope.lab.services", "gateway", *state_arg])
        if wireguard:
            pids["wireguard"] = _spawn(A.NS_INET, "wireguard",
                                       ["-m", "tamperscope.lab.services", "wireguard", *state_arg])
        if tor:
            pids["tornet"] = _spawn(A.NS_INET, "tornet", ["-m", "tamperscope.lab.services", "tornet", *state_arg,
                                                          "--tor-network", str(PATHS.tor_network)])
        _write_state(st)
        _wait_ready(list(pids), ready_timeout(profile))
        st["status"] = "up"
        _write_state(st)
        return st
    except BaseException as e:
        _give_up(e, "lab up")


# The services that read the profile; `lab up --switch` restarts only these. The others (the control helper,
# the obfs4 bridge, the RiseupVPN gateway, WireGuard, the Tor network) and the namespaces, links, CAs and
# certificates stay as they are.
PROFILED = ("censor", "inet", "isp", "border")


def _spawn_profiled(profile: Profile, border: bool) -> dict[str, int]:
    """Start the services that read the profile (the state file names it): their pids by name."""
    state_arg = ["--state", str(PATHS.root)]
    pids = {"censor": _spawn(A.NS_CENSOR, "censor", ["-m", "tamperscope.lab.censor", "--profile", profile.source,
                                                      "--log", str(PATHS.log), "--ready", str(PATHS.root / "ready-censor")]),
            "inet": _spawn(A.NS_INET, "inet", ["-m", "tamperscope.lab.services", "inet", *state_arg]),
            "isp": _spawn(A.NS_ACCESS, "isp", ["-m", "tamperscope.lab.services", "isp", *state_arg])}
    if border:
        pids["border"] = _spawn(A.NS_BORDER, "border", ["-m", "tamperscope.lab.services", "border", *state_arg])
    return pids


# conntrack -F, which Debian's nftables does not bring: ctnetlink's IPCTNL_MSG_CT_DELETE with no attributes
# (nlmsghdr, nfgenmsg for AF_INET) deletes every entry of the namespace; the kernel's ack carries errno 0
_FLUSH_CONNTRACK = """
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
s.send(struct.pack("=LHHLL", 20, (1 << 8) | 2, 0x1 | 0x4, 1, 0) + struct.pack("=BBH", socket.AF_INET, 0, 0))
_len, kind, _flags, _seq, _pid, err = struct.unpack("=LHHLLi", s.recv(4096)[:20])
sys.exit(0 if kind == 2 and err == 0 else f"conntrack flush: netlink answered type {kind}, error {err}")
"""


def _write_resolv_conf(profile: Profile) -> None:
    """Every namespace's stub resolver, a lab address: the ISP's for the client and the access router, the
    public one elsewhere, each waited for beyond the ISP resolver's own upstream wait, which a long
    ``delay_ms`` lengthens (`farm.upstream_wait`). None may read the host's: the lab's Tor relays checked their
    exit DNS through it, a packet to an address outside the lab (QA). Replaced, not written through: a link
    left there would send the text elsewhere."""
    stub_wait = math.ceil(farm.upstream_wait(profile))
    for ns in A.NAMESPACES:
        server = A.ISP_RESOLVER if ns in (A.NS_CLIENT, A.NS_ACCESS) else A.PUBLIC_RESOLVER
        d = NETNS_ETC / ns
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"resolv.conf.{os.getpid()}.tmp"
        tmp.write_text(f"nameserver {server}\noptions timeout:{stub_wait} attempts:1\n")
        tmp.replace(d / "resolv.conf")


def _switch(profile: Profile, st: dict[str, Any]) -> dict[str, Any]:
    """Give a lab that is up another profile: stop the censor and the servers that read the profile, replace the
    border's interception rules, empty the ground-truth log, and start them again with ``profile``. A lab up
    takes about 3 s, half of it the Tor network's start; this takes about one second. What the lab answers is
    then what a fresh `lab up` with ``profile`` answers, but the helper, the bridges, the VPN servers and the
    Tor network keep running (a Tor client finds a consensus at once). Never leaves half a lab: on failure the
    lab is taken down."""
    try:
        st["status"] = "starting"
        pids: dict[str, int] = st["pids"]
        _write_state(st)
        # killed outright: they keep nothing (the log is emptied), and their exits took 0.5-1 s of a switch
        _stop([pids.pop(name) for name in PROFILED if name in pids], signal.SIGKILL)
        for name in PROFILED:
            (PATHS.root / f"ready-{name}").unlink(missing_ok=True)
        _run("ip", "netns", "exec", A.NS_BORDER, "nft", "delete", "table", "ip", "ts_intercept", check=False)
        # the redirects of the old rules live on in the connection tracker: a new flow from the same port would
        # still reach the old profile's proxy
        _run("ip", "netns", "exec", A.NS_BORDER, sys.executable, "-I", "-c", _FLUSH_CONNTRACK)
        border = _nft_border(profile)
        _write_resolv_conf(profile)  # its wait follows the profile's delay_ms
        PATHS.log.write_text("")
        st.update({"profile": profile.name, "profile_path": profile.source,
                   "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        _write_state(st)
        pids.update(_spawn_profiled(profile, border))
        _write_state(st)
        _wait_ready([name for name in PROFILED if name in pids], ready_timeout(profile))
        st["status"] = "up"
        _write_state(st)
        return st
    except BaseException as e:
        _give_up(e, "lab up --switch")


def _give_up(e: BaseException, what: str) -> NoReturn:
    """Take a lab that failed to come up down again, and say why in one line, with each service's last words."""
    try:
        logs = _log_tail()
    except OSError:  # a log removed meanwhile
        logs = ""
    try:
        _down()
    except LabError:
        pass
    if isinstance(e, LabError):
        raise LabError(f"{e}{logs}", e.exit_code) from None
    if isinstance(e, KeyboardInterrupt):
        raise e
    raise LabError(f"{what} failed: {e.__class__.__name__}: {e}{logs}") from None


def asn_table() -> str:
    """The lab's prefix-to-ASN table, in iptoasn.com's TSV format."""
    return str(resources.files("tamperscope.lab") / "data" / "ip2asn.tsv")


def _helper_command() -> list[str] | None:
    """The control helper runs on the internet side once the probe package provides it."""
    try:
        import importlib.util

        if importlib.util.find_spec("tamperscope.helper.server") is None:
            return None
    except ImportError:
        return None
    return ["-m", "tamperscope.helper.server", "--host", A.HELPER, "--port", str(A.HELPER_PORT),
            "--ready", str(PATHS.root / "ready-helper"), "--asn-table", asn_table(),
            "--ca-bundle", str(PATHS.ca_bundle), "--resolver", A.PUBLIC_RESOLVER, "--allow-net", A.LAB_NET,
            "--only-net", A.LAB_NET,  # nothing a client names outside the lab is connected to (QA: 1.1.1.1)
            "--share-port"]  # port 80 of the helper's address: the web farm listens on 0.0.0.0:80 too


def ready_timeout(profile: Profile) -> float:
    """How long the services may take to start: `READY_TIMEOUT`, and `READY_PER_MIB` per MiB of the profile."""
    try:
        size = os.stat(profile.source).st_size if profile.source else 0
    except OSError:
        size = 0
    return READY_TIMEOUT + READY_PER_MIB * size / (1 << 20)


def _wait_ready(names: list[str], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    st = read_state() or {}
    while True:
        missing = [n for n in names if not (PATHS.root / f"ready-{n}").exists()]
        if not missing:
            return
        dead = [n for n in missing if not _alive(st["pids"][n])]
        if dead:
            raise LabError(f"lab service {dead[0]} exited while starting")
        if time.monotonic() > deadline:
            raise LabError(f"lab services did not start in {timeout:.0f} s: {', '.join(missing)}")
        time.sleep(0.05)


def _log_tail() -> str:
    out = []
    if PATHS.logs.exists():
        for f in sorted(PATHS.logs.glob("*.log")):
            lines = [ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                out.append(f"{f.stem}: {lines[-1][:300]}")
    return ("; " + " | ".join(out)) if out else ""


# -- status / exec / log ---------------------------------------------------

def status() -> dict[str, Any]:
    st = read_state()
    running = is_up()
    info: dict[str, Any] = {"up": running, "namespaces": lab_namespaces()}
    if st:
        info.update({"profile": st.get("profile"), "profile_path": st.get("profile_path"), "started": st.get("started"),
                     "ca_bundle": st.get("ca_bundle"), "log": st.get("log_path"),
                     "processes": {k: {"pid": v, "alive": _alive(v)} for k, v in st.get("pids", {}).items()}})
    info["addresses"] = A.Endpoints().as_dict()
    info["censor_after_hop"] = A.CENSOR_AFTER_HOP
    return info


def client_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update({
        "TAMPERSCOPE_LAB": "1",
        "TAMPERSCOPE_RESOLVER": A.ISP_RESOLVER,
        "TAMPERSCOPE_PUBLIC_RESOLVER": A.PUBLIC_RESOLVER,
        "TAMPERSCOPE_HELPER": A.Endpoints().helper_url,
        "TAMPERSCOPE_ECHO": A.ECHO,
        "TAMPERSCOPE_STUN": f"stun://{A.STUN}:{A.STUN_PORT}",
        "TAMPERSCOPE_TELEGRAM_DCS": ",".join(A.TELEGRAM_DCS),
        "TAMPERSCOPE_TOR_TARGETS": str(PATHS.tor_targets),
        "TAMPERSCOPE_WG_CONFIG": str(PATHS.wg_config),
        "TAMPERSCOPE_TOR_NETWORK": str(PATHS.tor_network),
        "TAMPERSCOPE_SILENT_RESOLVER": A.SILENT,
        "TAMPERSCOPE_DOH": f"https://{A.PUBLIC_RESOLVER}/dns-query",
        "TAMPERSCOPE_CA_BUNDLE": str(PATHS.ca_bundle),
        "SSL_CERT_FILE": str(PATHS.ca_bundle),
        "TAMPERSCOPE_ASN_TABLE": asn_table(),
    })
    return env


def exec_argv(cmd: list[str], namespace: str = A.NS_CLIENT) -> list[str]:
    return ["ip", "netns", "exec", namespace, *cmd]


def run_in(namespace: str, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
    """Run a command in a lab namespace with the client environment (for tests and the demo)."""
    return subprocess.run(exec_argv(cmd, namespace), env=client_env(), **kw)
