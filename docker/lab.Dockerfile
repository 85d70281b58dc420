# The compose stack's other services, each on the same local Debian base as the node image:
#   podman build --format docker -f docker/lab.Dockerfile --target prosody -t localhost/tincan-prosody .
# (targets: prosody, coturn, router). Configs and start scripts are mounted from docker/ by compose.yaml.
ARG BASE=debian:bookworm

FROM ${BASE} AS prosody
RUN apt-get update \
 && apt-get install -y --no-install-recommends prosody lua-unbound tini \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/bin/tini", "--"]

FROM ${BASE} AS coturn
RUN apt-get update \
 && apt-get install -y --no-install-recommends coturn tini \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/bin/tini", "--"]

# A home router: two networks, MASQUERADE from the LAN side (the command is in compose.yaml).
FROM ${BASE} AS router
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 tini \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/bin/tini", "--"]
