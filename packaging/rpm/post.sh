# %post of the spack-installer RPM ($1: 1 on install, 2 on upgrade): the service user and
# group, the spool, and systemd's view of the unit. See packaging/debian/postinst.
systemd-sysusers /usr/lib/sysusers.d/spack-installer.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/spack-installer.conf
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$1" -ge 2 ] && systemctl is-active --quiet spack-installer.service; then
        if [ -z "$(ls -A /var/spool/spack-installer/running 2>/dev/null)" ]; then
            systemctl try-restart spack-installer.service
        else
            echo "spack-installer: the worker is installing; it keeps the old version until" \
                 "'systemctl restart spack-installer' (interrupts and requeues the installs)."
        fi
    fi
fi
exit 0
