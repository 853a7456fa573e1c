# cmm-agent %post ($1: 1 first install, 2 upgrade): as the deb's postinst.
timer=cmm-agent-check.timer
# The unit loads these two as credentials and will not start without them: created empty
# (root-only), they read as "not configured yet" until the admin writes them.
install -d -m 0755 /etc/cmm
for f in grafana-token kubeconfig; do
    [ -e "/etc/cmm/$f" ] || install -m 0600 /dev/null "/etc/cmm/$f"
done
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable "$timer" >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl start "$timer" >/dev/null 2>&1 || :
    fi
elif [ -d /run/systemd/system ]; then
    systemctl try-restart "$timer" >/dev/null 2>&1 || :
fi
