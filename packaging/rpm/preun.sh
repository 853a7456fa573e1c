# cmm-agent %preun ($1: 0 erase, 1 upgrade): as the deb's prerm.
if [ "$1" -eq 0 ]; then
    systemctl disable --now cmm-agent-check.timer >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop cmm-agent-check.service >/dev/null 2>&1 || :
    fi
fi
