# cmm-agent %postun: reload systemd. rpm has no purge: an edited agent.toml is kept as
# agent.toml.rpmsave on erase; the state in /var/lib/private/cmm-agent stays, as with dpkg's
# remove.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
