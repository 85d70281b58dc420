import type { LinkInfo } from "@tincan/protocol";

/** For tests: a connected host-path link to `peerUid` with no traffic, `over` laid on top. */
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
    txBytes: 0,
    rxBytes: 0,
    txPackets: 0,
    rxPackets: 0,
    drops: {},
    ...over,
  };
}
