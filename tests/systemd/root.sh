#!/usr/bin/env bash
# A minimal Debian root that boots a real systemd as PID 1 in its own PID and mount namespaces
# (../shared/notes/systemd-in-a-namespace.md), with ca-certificates as a host running the agent
# has (rustls needs the system roots). Built once per machine, then reused; prints its path.
#
#   tests/systemd/root.sh            Debian 12 (bookworm, systemd 252): the main systemd tier
#   tests/systemd/root.sh bullseye   Debian 11 (glibc 2.31, systemd 247): the oldest host the
#                                    packages are proven on (Debian 10 is gone from the mirror)
set -euo pipefail
suite=${1:-bookworm}
case "$suite" in
  bookworm) root=${CMM_SYSTEMD_ROOT:-/var/cache/cmm/systemd-root} ;;
  *) root=/var/cache/cmm/systemd-root-$suite ;;
esac
if [ -x "$root/lib/systemd/systemd" ] && [ -f "$root/.cmm-ready-v3" ]; then
  echo "$root"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "root.sh: needs root (debootstrap, namespaces)" >&2; exit 1; }
command -v debootstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
# The mirror the machine's own apt uses.
mirror=$(grep -rhoE '^URIs: *http[^ ]+debian/?$|^deb +http[^ ]+debian/? ' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null \
  | head -1 | sed -E 's/^URIs: *//; s/^deb +//; s/ +$//' || true)
mirror=${mirror:-http://deb.debian.org/debian}
rm -rf "$root.tmp"; mkdir -p "$(dirname "$root")"
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates "$suite" "$root.tmp" "$mirror" >&2
# Without udev a getty waits forever for its device and the boot never reaches `running`.
for u in getty.target serial-getty@.service getty@.service console-getty.service; do
  ln -sf /dev/null "$root.tmp/etc/systemd/system/$u"
done
touch "$root.tmp/.cmm-ready-v3"
rm -rf "$root"; mv "$root.tmp" "$root"
echo "$root"
