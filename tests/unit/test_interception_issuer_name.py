"""The interceptor's name (``x_equipment.name``) from the issuer netx records, ``cert.issuer.rfc4514_string()``.

QA: the string was split at every comma, so ``O=Fortinet\\, Inc.`` named "Fortinet\\", and of two O= the last won.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tamperscope.model.interception import issuer_name


def _issuer(*attributes: tuple[x509.ObjectIdentifier, str]) -> str:
    """What netx records: an issuer's RFC 4514 string, as cryptography writes it."""
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes]).rfc4514_string()


O, CN, C, OU = NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME, NameOID.COUNTRY_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME


@pytest.mark.parametrize(("attributes", "name"), [
    (((C, "US"), (O, "Fortinet, Inc."), (CN, "FortiGate CA")), "Fortinet, Inc."),
    (((O, "Kaspersky Lab, JSC"), (OU, "Web Anti-Virus"), (CN, "Kaspersky Anti-Virus Personal Root")),
     "Kaspersky Lab, JSC"),
    (((CN, "Sophos SSL CA_C1+C2"),), "Sophos SSL CA_C1+C2"),  # no O=: the CN, its plus kept
    (((O, 'Quote "Q" Ltd'), (CN, "x")), 'Quote "Q" Ltd'),
    (((O, "Parent Org"), (O, "Child Org")), "Child Org"),  # the last RDN is written first: the most specific
    (((O, "Касперский, АО"),), "Касперский, АО"),
    (((C, "TM"),), "C=TM"),  # nothing to name it by: the string as it is
])
def test_the_name_is_the_organisations_whole(attributes: tuple[tuple[x509.ObjectIdentifier, str], ...],
                                             name: str) -> None:
    assert issuer_name(_issuer(*attributes)) == name


def test_escapes_written_by_hand_and_nothing() -> None:
    assert issuer_name("O=Kerio\\2C s.r.o.,CN=y") == "Kerio, s.r.o."  # a hex pair is a byte of the value
    assert issuer_name("O=\\D0\\9A\\D0\\B0") == "Ка"
    assert issuer_name(None) is None and issuer_name("") is None
