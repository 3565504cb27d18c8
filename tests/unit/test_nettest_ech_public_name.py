"""A published ECH config whose public name no ClientHello can carry is not used: echcheck falls back to GREASE.

The config list's parser takes any public name made of letters, digits, dots and dashes, so "a..b", ".a"
and a label of 64 characters pass it; the TLS library that writes the outer hello refuses them (IDNA: an
empty label, or one over 63 bytes). Before, sealing the target's hello for such a config raised
UnicodeError out of echcheck.run (and remote_web's echo_ech): a resolver answering the HTTPS record with
it, or a censor forging that answer, left no measurement at all. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import ssl

import pytest

from tamperscope.nettests.echconfig import sendable_name, usable_config
from tamperscope.wire import ech

try:
    from . import test_echcheck as E
except ImportError:
    import test_echcheck as E  # type: ignore[no-redef]

KEY = E.ECH_KEY.public_key().public_bytes_raw()
UNSENDABLE = ["a..b", ".cloudflare-ech.com", "x" * 64 + ".example"]


def published(name: str) -> bytes:
    return ech.encode_config_list(ech.encode_config(0x2A, KEY, name, ((1, 1),), 64))


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return E.TestCA(tmp_path_factory.mktemp("ca")).server_context(E.NAME)


@pytest.mark.parametrize("name", UNSENDABLE, ids=["empty-label", "leading-dot", "long-label"])
def test_echcheck_measures_with_grease_when_the_published_public_name_cannot_be_sent(
        tls_context: ssl.SSLContext, name: str) -> None:
    with E.TCPServer("127.0.0.1", E.censor(tls_context, None)) as server:
        tk = E.measure_with(server.port, E.https_record(published(name)))
    assert "public name a ClientHello can carry" in tk["x_ech_config_error"]
    assert tk["target"]["echconfig"] == "GREASE" and tk["target"]["outer_server_name"] == E.NAME
    assert (tk["x_mechanism"], tk["x_status"]) == ("none", "ok")


def test_a_config_with_an_unsendable_name_is_skipped_for_the_next_usable_one() -> None:
    import base64

    good = ech.encode_config(0x2B, KEY, "public.example", ((1, 1),), 64)
    both = ech.encode_config_list(ech.encode_config(0x2A, KEY, "a..b", ((1, 1),), 64), good)
    config, why = usable_config(base64.b64encode(both).decode())
    assert why is None and config is not None and config.public_name == "public.example"
    assert sendable_name("cloudflare-ech.com") and not any(sendable_name(n) for n in UNSENDABLE)
