# A Debian machine with systemd as PID 1, for test/systemd.test.ts (pnpm test:compose): the test
# installs the built tincan .deb into a container of this image booted with /sbin/init, and runs the
# units and systemd-resolved for real. Same local Debian base as the compose stack's images.
#   podman build --format docker -f docker/systemd-test.Dockerfile -t localhost/tincan-sysd .
ARG BASE=debian:bookworm
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends systemd systemd-sysv systemd-resolved libnss-resolve polkitd dbus libpam-systemd \
      iproute2 iputils-ping procps prosody \
 && rm -rf /var/lib/apt/lists/* \
 # What a container does not need at boot: consoles, udev's triggers, timers.
 && systemctl mask getty.target console-getty.service systemd-udev-trigger.service \
      systemd-udevd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
      systemd-tmpfiles-clean.timer prosody.service
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
