#!/usr/bin/env bash
# Idempotent setup: Debian packages when missing, then .venv with pinned dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="iproute2 nftables ethtool libpcap0.8 iputils-ping procps chromium obfs4proxy openvpn wireguard-go wireguard-tools tor"
missing=""
for p in $PKGS; do
  # installed, not merely known (a removed package's configuration files keep it in dpkg's list)
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages:$missing (run as root, or install them)" >&2; exit 2
  fi
  echo "setup: installing$missing"
  apt-get update -qq
  # No service may start: Debian's tor package would start a relay client that contacts the real Tor network
  # (the lab runs its own tor processes, and nothing else of these packages runs as a service)
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || { [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
  case " $missing " in  # just installed by us (a tor the user had is left alone): not started at boot either
    *" tor "*) if [ -d /run/systemd/system ]; then systemctl disable --now tor >/dev/null 2>&1 || true; fi ;;
  esac
fi
stamp=.venv/.tamperscope-stamp
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/tamperscope ]; then
  exit 0
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
