# %preun of the spack-installer RPM ($1: 0 on removal, 1 on upgrade): on removal, stop
# and disable the worker (running installs are requeued in the spool, which stays).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now spack-installer.service spack-installer-cleanup.timer || true
fi
exit 0
