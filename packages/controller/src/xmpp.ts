import { pbkdf2 } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { promisify } from "node:util";
import {
  describeIssues,
  MAX_SIGNAL_BYTES,
  PRESENCE_NS,
  PresenceTincan,
  SIGNAL_NS,
  Signal,
} from "@tincan/protocol";
import { type Client, client, type Element, jid as parseJid, xml } from "@xmpp/client";
import type { RosterItem, Subscription } from "./admission.js";
import type { Log } from "./logger.js";

const NS_ROSTER = "jabber:iq:roster";
const NS_PING = "urn:xmpp:ping";

/** A tincan node seen through presence. */
export interface PeerPresence {
  bareJid: string;
  fullJid: string;
  tincan: PresenceTincan;
}

export interface SignalEvent {
  fromFullJid: string;
  fromBareJid: string;
  signal: Signal;
}

/** How the link manager sends signals (XmppSession implements it; tests use fakes). */
export interface SignalSender {
  sendSignal(fullJid: string, signal: Signal): Promise<void>;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

/** Parses the JSON text of a `<signal xmlns="urn:tincan:signal:0">` element. Pure; never throws. */
export function parseSignalText(text: string): ParseResult<Signal> {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_SIGNAL_BYTES)
    return { ok: false, error: `signal too large (${bytes} > ${MAX_SIGNAL_BYTES} bytes)` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `signal is not JSON: ${(err as Error).message}` };
  }
  const parsed = Signal.safeParse(json);
  if (!parsed.success) return { ok: false, error: `invalid signal: ${describeIssues(parsed.error)}` };
  return { ok: true, value: parsed.data };
}

/** Finds and parses the signal child of a message stanza; `null` when the message carries none. */
export function parseSignalMessage(message: Element): ParseResult<Signal> | null {
  const children = message.getChildren("signal", SIGNAL_NS);
  if (children.length === 0) return null;
  if (children.length > 1) return { ok: false, error: "more than one signal element" };
  return parseSignalText((children[0] as Element).getText());
}

/** Builds the chat message that carries `signal` to `to`. */
export function signalMessage(to: string, signal: Signal): Element {
  return xml("message", { type: "chat", to }, xml("signal", { xmlns: SIGNAL_NS }, JSON.stringify(signal)));
}

/** Parses the `<tincan xmlns="urn:tincan:0"/>` child of a presence; `null` when there is none. */
export function parsePresenceTincan(presence: Element): ParseResult<PresenceTincan> | null {
  const el = presence.getChild("tincan", PRESENCE_NS);
  if (!el) return null;
  const { xmlns: _ns, ...attrs } = el.attrs;
  const parsed = PresenceTincan.safeParse(attrs);
  if (!parsed.success) return { ok: false, error: describeIssues(parsed.error) };
  return { ok: true, value: parsed.data };
}

/** The presence a tincan node sends: negative priority (never gets chat sent to the bare JID) + tincan child. */
export function tincanPresence(t: PresenceTincan): Element {
  const attrs: Record<string, string> = { xmlns: PRESENCE_NS, uid: t.uid };
  if (t.ipv4) attrs.ipv4 = t.ipv4;
  if (t.ipv6) attrs.ipv6 = t.ipv6;
  return xml("presence", null, xml("priority", null, "-1"), xml("tincan", attrs));
}

const SUBSCRIPTIONS = new Set<Subscription>(["none", "to", "from", "both", "remove"]);

/** Parses one `<item/>` of a jabber:iq:roster query. */
export function parseRosterItem(item: Element): RosterItem | null {
  const j = item.attrs.jid;
  if (!j) return null;
  let bare: string;
  try {
    bare = parseJid(j).bare().toString().toLowerCase();
  } catch {
    return null;
  }
  const sub = (item.attrs.subscription ?? "none") as Subscription;
  const groups = item.getChildren("group").map((g) => g.getText());
  const out: RosterItem = { jid: bare, subscription: SUBSCRIPTIONS.has(sub) ? sub : "none", groups };
  if (item.attrs.name) out.name = item.attrs.name;
  return out;
}

export interface XmppOptions {
  service: string;
  domain: string;
  username: string;
  password: string;
  resource?: string | undefined;
  /** PEM file of a private CA that signed the server's certificate (added to the system roots). */
  caFile?: string | undefined;
  log: Log;
  /** Seconds between liveness checks of an idle connection. Default 60. */
  pingIntervalSec?: number;
  /** Cap of the reconnect backoff. Default 60 s. */
  maxReconnectDelayMs?: number;
  /** How long after a fresh login peers that did not send presence again are reported offline. Default 5 s. */
  presenceSettleMs?: number;
  /** A connection attempt not online after this long is dropped and retried. Default 30 s. */
  loginTimeoutMs?: number;
}

/**
 * One XMPP session: login (TLS, optional private CA), reconnect with backoff, roster (+ pushes),
 * tincan presence, and signalling messages.
 *
 * Events: `online` (fullJid), `offline`, `roster` (RosterItem[]), `peer-online` (PeerPresence),
 * `peer-offline` (PeerPresence), `signal` (SignalEvent).
 */
export class XmppSession extends EventEmitter implements SignalSender {
  readonly bareJid: string;
  private readonly xmpp: Client;
  private readonly log: Log;
  private readonly rosterItems = new Map<string, RosterItem>();
  private readonly peersByFullJid = new Map<string, PeerPresence>();
  private presence: PresenceTincan | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private loginTimer: NodeJS.Timeout | null = null;
  private readonly badPresenceLogged = new Set<string>();
  private readonly badSignalLogged = new Set<string>();
  private stopping = false;
  private myFullJid: string | null = null;

  constructor(private readonly opts: XmppOptions) {
    super();
    this.log = opts.log;
    this.bareJid = `${opts.username}@${opts.domain}`.toLowerCase();
    this.xmpp = client({
      service: opts.service,
      domain: opts.domain,
      username: opts.username,
      password: opts.password,
      ...(opts.resource ? { resource: opts.resource } : {}),
    });
    if (opts.caFile) this.trustCa(readFileSync(opts.caFile, "utf8"));
    useNativeScramKeyDerivation(this.xmpp);
    if (this.xmpp.streamManagement) {
      this.xmpp.streamManagement.requestAckInterval = (opts.pingIntervalSec ?? 60) * 1000;
    }
    this.wire();
  }

  get fullJid(): string | null {
    return this.myFullJid;
  }

  get isOnline(): boolean {
    return this.xmpp.status === "online";
  }

  roster(): RosterItem[] {
    return [...this.rosterItems.values()];
  }

  peers(): PeerPresence[] {
    return [...this.peersByFullJid.values()];
  }

  peer(fullJid: string): PeerPresence | undefined {
    return this.peersByFullJid.get(fullJid);
  }

  /** Starts the session. Resolves when online; when the first attempt fails it rejects but keeps retrying. */
  async start(): Promise<void> {
    this.stopping = false;
    await this.xmpp.start();
  }

  /** Sends unavailable presence and closes the session; no reconnect after this. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.xmpp.reconnect.stop();
    this.clearTimers();
    this.clearLoginTimer();
    if (this.xmpp.status === "online") {
      await this.xmpp.send(xml("presence", { type: "unavailable" })).catch(() => {});
    }
    await this.xmpp.stop().catch((err: Error) => this.log.debug("xmpp stop", { error: err.message }));
  }

  /** Sets (and when online sends) our tincan presence. */
  async setPresence(t: PresenceTincan): Promise<void> {
    this.presence = t;
    if (this.isOnline) await this.xmpp.send(tincanPresence(t));
  }

  async sendSignal(fullJid: string, signal: Signal): Promise<void> {
    if (!this.isOnline) throw new Error("xmpp session is offline");
    await this.xmpp.send(signalMessage(fullJid, signal));
  }

  private wire(): void {
    const x = this.xmpp;
    x.on("error", (err: Error) => {
      if (this.stopping) return;
      this.log.warn("xmpp error", { error: err.message });
      // A refused login leaves the stream open and @xmpp/reconnect waiting for a disconnect that
      // never comes: drop it, so we try again (with backoff) instead of staying offline.
      if (err.name === "SASLError" && !this.isOnline)
        this.dropConnection("xmpp login stalled; reconnecting", "login refused");
    });
    x.on("status", (status: string) => {
      if (status === "connecting") this.armLoginTimer();
      else if (status === "online" || status === "offline") this.clearLoginTimer();
    });
    x.on("online", (address: { toString(): string }) => {
      void this.onOnline(address.toString());
    });
    x.on("disconnect", () => {
      if (this.stopping) return;
      this.clearTimers();
      // Exponential backoff: @xmpp/reconnect waits `delay` before each attempt and keeps trying.
      const delay = x.reconnect.delay;
      x.reconnect.delay = Math.min(delay * 2, this.opts.maxReconnectDelayMs ?? 60_000);
      this.log.warn("xmpp disconnected; reconnecting", { inMs: delay });
      this.emit("offline");
    });
    x.on("stanza", (stanza: Element) => {
      try {
        if (stanza.is("presence")) this.onPresence(stanza);
        else if (stanza.is("message")) this.onMessage(stanza);
      } catch (err) {
        this.log.error("failed to handle a stanza", { name: stanza.name, error: (err as Error).message });
      }
    });
    x.iqCallee.set(NS_ROSTER, "query", (ctx) => {
      // Roster pushes only from our own server/account (RFC 6121 2.1.6).
      const from = ctx.stanza.attrs.from;
      if (from && from.toLowerCase() !== this.bareJid) {
        this.log.warn("ignored a roster push not from our account", { from });
        return false;
      }
      for (const el of ctx.element.getChildren("item")) {
        const item = parseRosterItem(el);
        if (!item) continue;
        if (item.subscription === "remove") this.rosterItems.delete(item.jid);
        else this.rosterItems.set(item.jid, item);
      }
      this.emit("roster", this.roster());
      return true;
    });
  }

  private async onOnline(address: string): Promise<void> {
    this.myFullJid = address;
    this.xmpp.reconnect.delay = 1000;
    this.log.info("xmpp online", { jid: address });
    try {
      const res = await this.xmpp.iqCaller.request(
        xml("iq", { type: "get" }, xml("query", { xmlns: NS_ROSTER })),
        10_000,
      );
      this.rosterItems.clear();
      for (const el of res.getChild("query", NS_ROSTER)?.getChildren("item") ?? []) {
        const item = parseRosterItem(el);
        if (item && item.subscription !== "remove") this.rosterItems.set(item.jid, item);
      }
      this.emit("roster", this.roster());
    } catch (err) {
      this.log.error("roster fetch failed", { error: (err as Error).message });
    }
    // Peers we knew from the last session come back through presence after ours; those that do not
    // within presenceSettleMs are reported offline (so a short XMPP outage does not tear links down).
    const stale = new Set(this.peersByFullJid.keys());
    for (const p of this.peersByFullJid.values()) (p as PeerPresence & { stale?: boolean }).stale = true;
    if (this.presence) await this.xmpp.send(tincanPresence(this.presence)).catch(() => {});
    this.emit("online", address);
    if (stale.size > 0) {
      this.settleTimer = setTimeout(() => {
        for (const full of stale) {
          const p = this.peersByFullJid.get(full) as (PeerPresence & { stale?: boolean }) | undefined;
          if (p?.stale) this.dropPeer(full);
        }
      }, this.opts.presenceSettleMs ?? 5000);
    }
    this.schedulePing();
  }

  private schedulePing(): void {
    const ms = (this.opts.pingIntervalSec ?? 60) * 1000;
    this.pingTimer = setInterval(() => {
      // With stream management on, its <r/> every interval already checks the connection.
      if (this.xmpp.streamManagement?.enabled || this.xmpp.status !== "online") return;
      const ping = xml("iq", { type: "get", to: this.opts.domain }, xml("ping", { xmlns: NS_PING }));
      this.xmpp.iqCaller.request(ping, 15_000).catch((err: Error) => {
        // A server that does not support ping still answers (with an error): only a timeout means dead.
        // The connection is dead or the server overloaded: no polite stream close, which
        // would wait for an answer that does not come (and data could still arrive after it).
        if (/timeout/i.test(err.message) || err.name === "TimeoutError")
          this.dropConnection("xmpp ping timed out; reconnecting");
      });
    }, ms);
    this.pingTimer.unref();
  }

  private armLoginTimer(): void {
    this.clearLoginTimer();
    const ms = this.opts.loginTimeoutMs ?? 30_000;
    this.loginTimer = setTimeout(() => {
      this.loginTimer = null;
      if (!this.stopping && !this.isOnline)
        this.dropConnection("xmpp login stalled; reconnecting", `not online after ${ms} ms`);
    }, ms);
  }

  private clearLoginTimer(): void {
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
  }

  /** Closes the transport at once: -> disconnect -> reconnect with backoff. */
  private dropConnection(message: string, why?: string): void {
    this.log.warn(message, why ? { why } : {});
    (this.xmpp.socket as { destroy?(): void } | null)?.destroy?.();
  }

  private clearTimers(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.pingTimer = null;
    this.settleTimer = null;
  }

  private onPresence(stanza: Element): void {
    const from = stanza.attrs.from;
    if (!from) return;
    let full: string;
    let bare: string;
    try {
      const j = parseJid(from);
      if (!j.resource) return; // presence of a bare JID (e.g. subscription handling): not a node
      full = j.toString();
      bare = j.bare().toString().toLowerCase();
    } catch {
      return;
    }
    if (full === this.myFullJid || bare === this.bareJid) return;
    const type = stanza.attrs.type;
    if (type === "unavailable" || type === "error") {
      this.dropPeer(full);
      return;
    }
    if (type !== undefined) return; // subscribe/subscribed/...: the roster decides admission
    const parsed = parsePresenceTincan(stanza);
    if (parsed === null) {
      this.dropPeer(full); // a resource without tincan (a chat client): not a node
      return;
    }
    if (!parsed.ok) {
      if (!this.badPresenceLogged.has(full)) {
        this.badPresenceLogged.add(full);
        this.log.warn("ignored malformed tincan presence (logged once)", { from: full, error: parsed.error });
      }
      this.dropPeer(full);
      return;
    }
    const old = this.peersByFullJid.get(full);
    const peer: PeerPresence = { bareJid: bare, fullJid: full, tincan: parsed.value };
    this.peersByFullJid.set(full, peer);
    if (old && sameTincan(old.tincan, peer.tincan)) return; // a presence refresh, nothing new
    if (old) this.emit("peer-offline", old);
    this.emit("peer-online", peer);
  }

  private dropPeer(fullJid: string): void {
    const old = this.peersByFullJid.get(fullJid);
    if (!old) return;
    this.peersByFullJid.delete(fullJid);
    this.emit("peer-offline", old);
  }

  private onMessage(stanza: Element): void {
    const from = stanza.attrs.from;
    if (!from) return;
    const parsed = parseSignalMessage(stanza);
    if (parsed === null) return;
    if (stanza.attrs.type === "error") {
      this.log.debug("a signal bounced", { from });
      return;
    }
    if (!parsed.ok) {
      // Anyone can send us messages: log once per sender, not per stanza.
      if (!this.badSignalLogged.has(from) && this.badSignalLogged.size < 1024) {
        this.badSignalLogged.add(from);
        this.log.warn("ignored an invalid signal (logged once per sender)", { from, error: parsed.error });
      }
      return;
    }
    let bare: string;
    try {
      bare = parseJid(from).bare().toString().toLowerCase();
    } catch {
      return;
    }
    this.emit("signal", { fromFullJid: from, fromBareJid: bare, signal: parsed.value } satisfies SignalEvent);
  }

  /**
   * Trusts a private CA for this server name, without turning verification off.
   * @xmpp/starttls upgrades with `tls.connect({socket, host: domain})` and takes no TLS options,
   * so the TLS socket class of @xmpp/tls (used by STARTTLS and by direct TLS) gets `ca` added
   * for connections to this domain. Direct TLS (xmpps://) dials the service host, so its
   * transport also names the domain as the TLS server name. @xmpp's own STARTTLS step runs
   * unchanged (an earlier version answered STARTTLS itself, and a timed-out attempt there could
   * leave the next login with two SASL exchanges on one stream).
   */
  private trustCa(caPem: string): void {
    const x = this.xmpp;
    const ca = [...rootCertificates, caPem];
    const domain = this.opts.domain;
    type TlsTransport = new () => { socketParameters(s: string): Record<string, unknown> | undefined };
    const tlsTransport = x.transports.find((t) => {
      try {
        return t.prototype.socketParameters("xmpps://localhost:5223") !== undefined;
      } catch {
        return false;
      }
    });
    if (!tlsTransport) throw new Error("@xmpp/client has no TLS transport");
    addCaForServerName(tlsTransport.prototype.Socket as TlsSocketClass, domain, ca);
    const Base = tlsTransport as unknown as TlsTransport;
    class CaTlsTransport extends Base {
      override socketParameters(s: string) {
        const p = super.socketParameters(s);
        return p && { ...p, servername: domain };
      }
    }
    x.transports.unshift(CaTlsTransport as unknown as (typeof x.transports)[number]);
  }
}

const pbkdf2Async = promisify(pbkdf2);
/** More than any server uses (prosody: 10000); a bound on the work a server can ask of us. */
const MAX_SCRAM_ITERATIONS = 1_000_000;

interface ScramState {
  _stage: string;
  _salt?: Uint8Array;
  _iterationCount?: number;
}
type ScramClass = new () => ScramState & { response(cred: Record<string, unknown>): unknown };

/**
 * SCRAM-SHA-1's key derivation (PBKDF2-HMAC-SHA1, thousands of HMACs) by Node's native crypto off
 * the event loop: sasl-scram-sha-1 runs it as a loop of WebCrypto calls, ~1.4 s of CPU per login
 * here, which made 20 controllers starting together time out. The result goes in through the
 * library's own cached-credentials input (`salt` + `saltedPassword`), so the protocol stays its.
 */
function useNativeScramKeyDerivation(x: Client): void {
  const factory = (x as unknown as { saslFactory?: { _mechs?: { name: string; mech: ScramClass }[] } })
    .saslFactory;
  const entry = factory?._mechs?.find((m) => m.name === "SCRAM-SHA-1");
  if (!entry) return;
  const Base = entry.mech;
  entry.mech = class NativeScramSha1 extends Base {
    override async response(cred: Record<string, unknown>): Promise<unknown> {
      const { _salt: salt, _iterationCount: iterations } = this;
      if (this._stage !== "challenge" || typeof cred.password !== "string" || !salt || !iterations) {
        return super.response(cred);
      }
      if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_SCRAM_ITERATIONS)
        throw new Error(`SCRAM: the server asked for ${iterations} iterations`);
      const saltedPassword = new Uint8Array(await pbkdf2Async(cred.password, salt, iterations, 20, "sha1"));
      return super.response({ ...cred, salt, saltedPassword });
    }
  };
}

type TlsSocketClass = { prototype: { connect(options: Record<string, unknown>): void } };
const caByServerName = new Map<string, string[]>();
const patchedSocketClasses = new WeakSet<object>();

/** Makes the @xmpp/tls socket class verify connections to `serverName` against `ca`. */
function addCaForServerName(Socket: TlsSocketClass, serverName: string, ca: string[]): void {
  caByServerName.set(serverName.toLowerCase(), ca);
  if (patchedSocketClasses.has(Socket)) return;
  patchedSocketClasses.add(Socket);
  const connect = Socket.prototype.connect;
  Socket.prototype.connect = function (this: unknown, options: Record<string, unknown>) {
    const name = String(options.servername ?? options.host ?? "").toLowerCase();
    const trusted = caByServerName.get(name);
    return connect.call(this, trusted ? { ...options, servername: name, ca: trusted } : options);
  };
}

function sameTincan(a: PresenceTincan, b: PresenceTincan): boolean {
  return a.uid === b.uid && a.ipv4 === b.ipv4 && a.ipv6 === b.ipv6;
}
