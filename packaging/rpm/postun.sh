# %postun of the spack-installer RPM. The spool, /var/lib/spack-installer, the user
# `spack` and the group `swinstaller` stay on removal; remove them by hand if you mean it.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
