import type { LinkInfo } from "@tincan/protocol";

/** A link.query entry for tests: connected on a host path, no traffic, unless `over` says otherwise. */
export function linkInfo(peerUid: string, over: Partial<LinkInfo> = {}): LinkInfo {
  return {
    peerUid,
    state: "connected",
    path: "host",
    local: null,
    remote: null,
    localType: null,
    remoteType: null,
    rttMs: 1,
    pathMtu: null,
    relayOnly: false,
    createdAt: 0,
    lastRxAt: null,
    lastTxAt: null,
    rxBytes: 0,
    txBytes: 0,
    rxPackets: 0,
    txPackets: 0,
    drops: {},
    ...over,
  };
}
