"""The lab's fixed plan: namespaces, links and addresses (all in 198.18.0.0/15).

    ts-client --- ts-access ===[ts-censor bridge]=== ts-border --- ts-inet (198.19.0.0/16, AnyIP)
    198.18.1.2    198.18.1.1      (no addresses)       198.18.2.2    198.18.3.2
                  198.18.2.1                           198.18.3.1
                                                       198.18.4.1 --- ts-outside 198.18.4.2

The censor is a layer-2 bridge between the access and border routers, so a
packet sent with TTL 2 reaches it with TTL 1: `CENSOR_AFTER_HOP` routers lie
between the client and the censor. The internet namespace owns the whole of
198.19.0.0/16 through a local route, so any address there answers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LAB_NET = "198.18.0.0/15"  # every lab address: the only place lab traffic may go
PREFIX = "ts-"
NS_CLIENT = "ts-client"
NS_ACCESS = "ts-access"
NS_CENSOR = "ts-censor"
NS_BORDER = "ts-border"
NS_INET = "ts-inet"
NS_OUTSIDE = "ts-outside"
NAMESPACES = (NS_CLIENT, NS_ACCESS, NS_CENSOR, NS_BORDER, NS_INET, NS_OUTSIDE)

CLIENT = "198.18.1.2"
ACCESS_LAN = "198.18.1.1"  # client's gateway (hop 1)
ACCESS_UP = "198.18.2.1"
BORDER_DOWN = "198.18.2.2"  # hop 2
BORDER_UP = "198.18.3.1"
BORDER_OUT = "198.18.4.1"
INET_LINK = "198.18.3.2"
OUTSIDE = "198.18.4.2"

ISP_RESOLVER = "198.18.1.53"  # on the access router: recurses through the censor
ISP_WEB = "198.18.1.80"  # an in-country web server, for measuring from the outside in
ISP_BLOCKPAGE = "198.18.1.81"  # where a poisoning ISP resolver sends people

INET_NET = "198.19.0.0/16"
AUTHORITATIVE = "198.19.0.53"
PUBLIC_RESOLVER = "198.19.0.8"
SILENT = "198.19.0.9"  # runs no DNS server: any DNS answer "from" it is forged
ECHO = "198.19.0.7"
HELPER = "198.19.0.10"
HELPER_PORT = 80
STUN = "198.19.0.19"  # a STUN server (RFC 5389 binding), for stunreachability; every 198.19 address answers
STUN_PORT = 3478
STUN_PORTS = (STUN_PORT, 19302)  # the standard port, and the one Google's servers (OONI's inputs) use
# Stand-ins for Telegram's data centres (the telegram nettest's access points): web-farm hosts like any other
TELEGRAM_DCS = tuple(f"198.19.2.{i}" for i in range(1, 6))
# Facebook's network (AS32934 in the lab's ASN table, as in the world's): Facebook's names resolve here, each to an
# address of its own by hash, so facebook_messenger finds their answers consistent unless a censor lies
FACEBOOK_NET = ipaddress.ip_network("198.19.96.0/19")
FACEBOOK_DOMAINS = ("facebook.com", "facebook.net", "fbcdn.net", "fbsbx.com", "messenger.com")
# Stand-ins for Tor's directory authorities (the tor nettest's targets in the lab, `tor_targets`): named after the
# real ten, each with its OR port on 443 (TLS, as every internet address serves) and its directory port on 80 (the
# web farm serves a consensus at /tor/status-vote/current/consensus.z)
TOR_DIRAUTHS = tuple((name, f"198.19.3.{i}") for i, name in enumerate(
    ("moria1", "tor26", "dizum", "Serge", "gabelmoo", "dannenberg", "maatuska", "longclaw", "bastet", "faravahar"), 1))
TOR_OR_PORT = 443
TOR_DIR_PORT = 80
# The lab's own Tor network (`lab.tornet`: Debian's tor, three directory authorities that are also the relays a
# circuit is built through, in TestingTorNetwork mode), which vanilla_tor bootstraps against: on the usual relay
# ports, and inside 198.19.3.0/28, which the profiles that block Tor's directory authorities by address cover
TOR_NETWORK = tuple((f"labauth{i}", f"198.19.3.{10 + i}") for i in range(1, 4))
# two more relays (not authorities): a client picks three relays for a circuit, and with only the authorities one
# missing from a consensus (its descriptor late under load) left it no middle hop
TOR_NETWORK_RELAYS = (("labrelay1", "198.19.3.14"), ("labrelay2", "198.19.3.15"))
TOR_NETWORK_OR_PORT = 9001
TOR_NETWORK_DIR_PORT = 9030
# ... and a bridge of it: a tor relay that publishes nothing, reached through obfs4proxy (its cert kept between lab
# ups), outside 198.19.3.0/28, so a censor that blocks the authorities by address does not know it
TOR_BRIDGE = "198.19.3.21"
TOR_BRIDGE_OBFS4_PORT = 27016
# An obfs4 bridge (a real obfs4proxy, with the lab's key: `farm.obfs4_identity`), on a port as bridges use; its
# address is no directory authority's, so a censor that blocks those by address does not know it
OBFS4_BRIDGE = "198.19.3.20"
OBFS4_PORT = 27015
# A RiseupVPN gateway, as the lab's stand-in for RiseupVPN's API lists it (`farm.riseup_eip_service`): a real OpenVPN
# server (Debian's openvpn, TCP) and a real obfs4 bridge (obfs4proxy, the lab's key) at one address
RISEUP_GATEWAY = "198.19.3.30"
OPENVPN_PORT = 1194
RISEUP_OBFS4_PORT = 23042
# A WireGuard server (Debian's wireguard-go, userspace: the kernel here has no wireguard module), keys from
# `farm.wireguard_keys`. It binds the wildcard address, so every internet address answers on its port; the
# client's configuration names this one
WIREGUARD_SERVER = "198.19.3.40"
WIREGUARD_PORT = 51820
WIREGUARD_DEVICE = "ts-wg"  # the prefix of its device's name: each lab adds six hex digits of its own
# portquiz.net, as the real one: a server that accepts TCP on every port and answers HTTP on each (the lab's
# nftables in ts-inet send every port of this address to the web farm's port 80), portfiltering's default target
PORTQUIZ = "198.19.3.50"
PORTQUIZ_NAME = "portquiz.net"
CHAT_PORT = 5222  # WhatsApp's chat servers' port (XMPP's): every internet address accepts connections on it
FARM = tuple(f"198.19.1.{i}" for i in range(1, 33))  # shared web-hosting addresses
DEDICATED_NET = ipaddress.ip_network("198.19.128.0/17")  # one address per rule-named site

CENSOR_AFTER_HOP = 1

# links: (namespace A, device A, namespace B, device B)
LINKS = (
    (NS_CLIENT, "ts-c0", NS_ACCESS, "ts-a0"),
    (NS_ACCESS, "ts-a1", NS_CENSOR, "ts-z0"),
    (NS_CENSOR, "ts-z1", NS_BORDER, "ts-b0"),
    (NS_BORDER, "ts-b1", NS_INET, "ts-i0"),
    (NS_BORDER, "ts-b2", NS_OUTSIDE, "ts-o0"),
)
CENSOR_CLIENT_SIDE = "ts-z0"
CENSOR_INET_SIDE = "ts-z1"
ROUTERS = {"access": [ACCESS_LAN, ACCESS_UP], "border": [BORDER_DOWN, BORDER_UP, BORDER_OUT]}


@dataclass(frozen=True)
class Endpoints:
    """What `lab status --json` reports and `lab exec` exports."""

    helper_url: str = f"http://{HELPER}:{HELPER_PORT}/"

    def as_dict(self) -> dict[str, object]:
        return {
            "client": CLIENT,
            "isp_resolver": ISP_RESOLVER,
            "public_resolver": PUBLIC_RESOLVER,
            "authoritative": AUTHORITATIVE,
            "silent_resolver": SILENT,
            "helper": HELPER,
            "helper_url": self.helper_url,
            "echo": ECHO,
            "stun": f"stun://{STUN}:{STUN_PORT}",
            "telegram_dcs": list(TELEGRAM_DCS),
            "facebook_net": str(FACEBOOK_NET),
            "tor_dirauths": [ip for _, ip in TOR_DIRAUTHS],
            "tor_network": [f"{ip}:{TOR_NETWORK_OR_PORT}" for _, ip in TOR_NETWORK],
            "tor_bridge": f"{TOR_BRIDGE}:{TOR_BRIDGE_OBFS4_PORT}",
            "obfs4_bridge": f"{OBFS4_BRIDGE}:{OBFS4_PORT}",
            "riseup_gateway": RISEUP_GATEWAY,
            "wireguard": f"{WIREGUARD_SERVER}:{WIREGUARD_PORT}",
            "isp_web": ISP_WEB,
            "isp_blockpage": ISP_BLOCKPAGE,
            "outside": OUTSIDE,
            "web_farm": list(FARM),
            "dedicated_net": str(DEDICATED_NET),
            "routers": ROUTERS,
            "hops": [ACCESS_LAN, BORDER_DOWN],
            "censor_after_hop": CENSOR_AFTER_HOP,
            "namespaces": list(NAMESPACES),
        }


def in_lab(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(LAB_NET)
    except ValueError:
        return False
