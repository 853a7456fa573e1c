# cmm-agent %post ($1: 1 first install, 2 upgrade): as the deb's postinst.
timer=cmm-agent-check.timer

# systemd before 247 (Debian 10: 241; RHEL and Rocky 8: 239) has no LoadCredential=: it skips
# the line, and the unit's transient user could not read the root-only files. There the check
# runs as a static system user, cmm-agent, that owns the two files (still 0600: root and that
# user read them, nobody else), and finds them where systemd would have put the credentials.
# CMM_LEGACY_CREDENTIALS=1 chooses this on any systemd (tests; a backport that hides its version).
legacy_dropin=/etc/systemd/system/cmm-agent-check.service.d/10-cmm-legacy-credentials.conf
legacy_credentials() {
    [ "${CMM_LEGACY_CREDENTIALS:-}" = 1 ] && return 0
    v=$(systemctl --version 2>/dev/null | awk 'NR==1 {print $2 + 0}')
    [ -n "$v" ] && [ "$v" -gt 0 ] && [ "$v" -lt 247 ]
}
use_static_user() {
    getent passwd cmm-agent >/dev/null || useradd --system --user-group --no-create-home \
        --home-dir /var/lib/cmm-agent --shell /usr/sbin/nologin cmm-agent
    chown cmm-agent:cmm-agent /etc/cmm/grafana-token /etc/cmm/kubeconfig
    # Its HOME (helm's cache): StateDirectory= makes it too, but not on systemd before 235.
    [ -e /var/lib/cmm-agent ] || install -d -o cmm-agent -g cmm-agent -m 0700 /var/lib/cmm-agent
    mkdir -p "${legacy_dropin%/*}"
    printf '%s\n' \
        '# Written by the cmm-agent package: this systemd has no LoadCredential= (< 247).' \
        '[Service]' 'LoadCredential=' 'DynamicUser=no' 'User=cmm-agent' 'Group=cmm-agent' \
        'Environment=CREDENTIALS_DIRECTORY=/etc/cmm' > "$legacy_dropin"
}
# The unit loads these two as credentials and will not start without them: created empty
# (root-only), they read as "not configured yet" until the admin writes them.
install -d -m 0755 /etc/cmm
for f in grafana-token kubeconfig; do
    [ -e "/etc/cmm/$f" ] || install -m 0600 /dev/null "/etc/cmm/$f"
done
if legacy_credentials; then use_static_user; fi
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
