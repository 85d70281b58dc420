# The compose stack's other services in one image on the same local Debian base as the node image
# (one apt run instead of three): prosody, coturn and the NAT router (iptables); compose.yaml gives
# each service its command, and mounts the configs and start scripts from docker/.
#   podman build --format docker -f docker/lab.Dockerfile -t localhost/tincan-lab .
ARG BASE=debian:bookworm
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prosody lua-unbound coturn iptables iproute2 tini \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/bin/tini", "--"]
