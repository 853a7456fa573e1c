# cmm-agent %postun: reload systemd. rpm has no purge: an edited agent.toml is kept as
# agent.toml.rpmsave on erase; the state in /var/lib/private/cmm-agent stays, as with dpkg's
# remove. On erase ($1 = 0) the older-systemd drop-in (%post) goes with the unit.
if [ "$1" -eq 0 ]; then
    rm -f /etc/systemd/system/cmm-agent-check.service.d/10-cmm-legacy-credentials.conf
    rmdir /etc/systemd/system/cmm-agent-check.service.d 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
