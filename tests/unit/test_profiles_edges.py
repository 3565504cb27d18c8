"""Lab profiles the validation must refuse, in one line naming the file and the key, which test_profiles.py leaves
open (found by mutation testing: each check below was removable with every other test passing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamperscope.lab import blockpages
from tamperscope.model.profile import ProfileError, load_profile

RULE = "[[rule]]\nid='a'\n"
BAD = [
    ("[network]\nresidual_s = 3601\n", "network.residual_s: must be between 0 and 3600"),
    ("[network]\nresidual_s = -1\n", "network.residual_s: must be between 0 and 3600"),
    ("[network]\ntls_reassembly = 'some'\n", "network.tls_reassembly: must be one of full, segments, none"),
    ("[proxy]\nheader_case = 'camel'\n", "proxy.header_case: must be one of keep, lower, upper, title"),
    (RULE + "layer='http'\naction='rst'\ndomains=['x.org']\ninject={ip_id=65536}\n", "inject.ip_id: must be 0-65535"),
    (RULE + "layer='http'\naction='rst'\ndomains=['x.org']\ninject={ip_id=-1}\n", "inject.ip_id: must be 0-65535"),
    (RULE + "layer='http'\naction='rst'\ndomains=['x.org']\ninject={window=65536}\n",
     "inject.window: must be 0-65535"),
    ("[[rule]]\nlayer='http'\naction='rst'\ndomains=['x.org']\n", "rule[0].id: is required"),
    ("[[rule]]\nid='a'\naction='rst'\ndomains=['x.org']\n", "rule[0].layer: is required"),
    ("[[rule]]\nid='a'\nlayer='http'\ndomains=['x.org']\n", "rule[0].action: is required"),
    (RULE + "layer='tls'\naction='rst'\ndomains=['x.org']\nports=[0]\n", "ports: 0 is not a port number"),
    (RULE + "layer='tls'\naction='rst'\ndomains=['x.org']\nports=[65536]\n", "ports: 65536 is not a port number"),
    (RULE + "layer='ip'\naction='drop'\n", "an ip rule needs domains or cidrs"),
    (RULE + "layer='http'\naction='rst'\ndomains=['x.org']\ncidrs=['198.18.0.0/24']\n",
     "cidrs: only ip rules match CIDRs"),
    (RULE + "layer='dns'\naction='drop'\n", "a dns rule needs domains or a regex"),
    (RULE + "layer='http'\naction='rst'\n", "a http rule needs domains or a regex"),
    (RULE + "layer='tls'\naction='rst'\n", "a tls rule needs domains or a regex"),
    (RULE + "layer='dns'\naction='inject'\ndomains=['x.org']\n", "answer: dns inject needs an answer address"),
    (RULE + "layer='dns'\naction='poison'\ndomains=['x.org']\n", "answer: dns poison needs an answer address"),
    (RULE + "layer='dns'\naction='drop'\ndomains=['x.org']\nanswer='127.0.0.1'\n",
     "answer: only dns inject/poison rules take an answer"),
    (RULE + "layer='http'\naction='blockpage'\ndomains=['x.org']\n", "blockpage: http blockpage needs a blockpage"),
    (RULE + "layer='http'\naction='rst'\ndomains=['x.org']\ndirection='sideways'\n",
     "direction: must be one of egress, ingress, both"),
]


@pytest.mark.parametrize(("text", "needle"), BAD)
def test_a_bad_profile_is_refused_in_one_line_naming_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(p, blockpages.names())
    msg = str(e.value)
    assert msg.startswith(str(p)) and needle in msg and "\n" not in msg, msg


@pytest.mark.parametrize("text", [
    "[network]\nresidual_s = 3600\ntls_reassembly = 'segments'\n",
    "[proxy]\nenabled = true\nheader_case = 'title'\n",
    RULE + "layer='tls'\naction='rst'\ndomains=['x.org']\nports=[1, 65535]\ninject={ip_id=65535, window=0}\n"
           "direction='both'\n",
    RULE + "layer='dns'\naction='inject'\ndomains=['x.org']\nanswer='127.0.0.1'\n",
])
def test_the_bounds_themselves_are_taken(tmp_path: Path, text: str) -> None:
    """The edges of each range (3600 s, port 65535, IP-ID 65535, window 0) and each listed word load."""
    p = tmp_path / "good.toml"
    p.write_text(text)
    load_profile(p, blockpages.names())
