import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
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
import { patchClient } from "./xmpp-patches.js";
import { type SrvResolver, xmppClientServices } from "./xmpp-srv.js";

const NS_ROSTER = "jabber:iq:roster";
const NS_PING = "urn:xmpp:ping";
const NS_HINTS = "urn:xmpp:hints";
const NS_CARBONS = "urn:xmpp:carbons:2";

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
  return xml(
    "message",
    { type: "chat", to },
    xml("signal", { xmlns: SIGNAL_NS }, JSON.stringify(signal)),
    // Session descriptions are for the addressed client only: no archive (XEP-0313 via XEP-0334
    // hints, also no offline storage) and no copies to the account's other clients (XEP-0280).
    xml("no-store", { xmlns: NS_HINTS }),
    xml("no-copy", { xmlns: NS_HINTS }),
    xml("private", { xmlns: NS_CARBONS }),
  );
}

/** Parses the `<tincan xmlns="urn:tincan:0"/>` child of a presence; `null` when there is none. */
export function parsePresenceTincan(presence: Element): ParseResult<PresenceTincan> | null {
  const el = presence.getChild("tincan", PRESENCE_NS);
  if (!el) return null;
  const { xmlns: _ns, ...attrs } = el.attrs;
  const routes = el.getChildren("route").map((r) => r.attrs.prefix);
  const parsed = PresenceTincan.safeParse(routes.length > 0 ? { ...attrs, routes } : attrs);
  if (!parsed.success) return { ok: false, error: describeIssues(parsed.error) };
  return { ok: true, value: parsed.data };
}

/** The presence a tincan node sends: negative priority (never gets chat sent to the bare JID) + tincan child. */
export function tincanPresence(t: PresenceTincan): Element {
  const attrs: Record<string, string> = { xmlns: PRESENCE_NS, uid: t.uid };
  if (t.ipv4) attrs.ipv4 = t.ipv4;
  if (t.ipv6) attrs.ipv6 = t.ipv6;
  const routes = (t.routes ?? []).map((prefix) => xml("route", { prefix }));
  return xml("presence", null, xml("priority", null, "-1"), xml("tincan", attrs, ...routes));
}

const SUBSCRIPTIONS: ReadonlySet<string> = new Set<Subscription>(["none", "to", "from", "both", "remove"]);

/** Parses one `<item/>` of a jabber:iq:roster query. An unknown subscription counts as "none". */
export function parseRosterItem(item: Element): ParseResult<RosterItem> {
  const j = item.attrs.jid;
  if (typeof j !== "string" || j === "") return { ok: false, error: "roster item without a jid" };
  let bare: string;
  try {
    bare = parseJid(j).bare().toString().toLowerCase();
  } catch (err) {
    return { ok: false, error: `roster item with an invalid jid: ${(err as Error).message}` };
  }
  if (bare.length > 3071) return { ok: false, error: "roster item jid longer than 3071 bytes" };
  const sub = item.attrs.subscription ?? "none";
  const groups = item.getChildren("group").map((g) => g.getText());
  const out: RosterItem = {
    jid: bare,
    subscription: SUBSCRIPTIONS.has(sub) ? (sub as Subscription) : "none",
    groups,
  };
  if (typeof item.attrs.name === "string" && item.attrs.name !== "") out.name = item.attrs.name;
  return { ok: true, value: out };
}

export interface XmppOptions {
  /** "xmpp://host:port"; without it the server is found by DNS SRV (see xmpp-srv.ts). */
  service?: string | undefined;
  /** Looks up SRV records (tests inject one); default node's dns.resolveSrv. */
  resolveSrv?: SrvResolver;
  domain: string;
  username: string;
  password: string;
  resource?: string | undefined;
  /** PEM file of a private CA that signed the server's certificate (added to the system roots). */
  caFile?: string | undefined;
  log: Log;
  /**
   * Seconds between liveness pings of the connection; a ping unanswered for as long (at most 15 s)
   * drops it. Also the scale of the other defaults below. Default 60.
   */
  pingIntervalSec?: number;
  /** Cap of the reconnect backoff. Default half the ping interval. */
  maxReconnectDelayMs?: number;
  /** How long after a fresh login peers that did not send presence again are reported offline. Default 5 s. */
  presenceSettleMs?: number;
  /** A connection attempt not online after this long is dropped and retried. Default the ping interval, within 5-30 s. */
  loginTimeoutMs?: number;
}

/** The first retry waits about this long; each further failure doubles it, up to the cap. */
const FIRST_RETRY_MS = 1000;
const MAX_PING_TIMEOUT_MS = 15_000;

/**
 * Delay before the next connection attempt after `failures` failures in a row: exponential from
 * 1 s, capped, with "equal jitter" (half fixed, half random) so that many nodes cut off together
 * by one server restart or network fault do not all come back in the same instant.
 */
export function reconnectDelayMs(
  failures: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  const exp = Math.min(capMs, FIRST_RETRY_MS * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

/**
 * One XMPP session: login (TLS, optional private CA), reconnect with backoff, roster (+ pushes),
 * tincan presence, and signalling messages.
 *
 * Every connection attempt uses a fresh @xmpp/client: a client whose connection died keeps state
 * (a half-open stream, a parser, a socket wrapper) that @xmpp/reconnect does not reset, and after
 * a refused login it waits for a disconnect that never comes. So there is one way out of any
 * connection: `drop()` tears the socket down (whatever it is: TCP, or the TLS wrapper of
 * STARTTLS / direct TLS), forgets that client, and schedules the next attempt with capped
 * exponential backoff and jitter, whatever the failure (refused login, timeout, refused connection,
 * ping unanswered, server closed the stream).
 *
 * Events: `online` (fullJid), `offline`, `roster` (RosterItem[]), `peer-online` (PeerPresence),
 * `peer-offline` (PeerPresence), `signal` (SignalEvent).
 */
export class XmppSession extends EventEmitter implements SignalSender {
  readonly bareJid: string;
  /** The client of the current (or last) connection attempt. */
  private xmpp: Client;
  /** Whether `xmpp` has been started (a fresh client is made for the next attempt). */
  private xmppUsed = false;
  /** Clients whose connection was dropped: their late events are ignored. */
  private readonly dropped = new WeakSet<Client>();
  private readonly log: Log;
  private readonly rosterItems = new Map<string, RosterItem>();
  private readonly peersByFullJid = new Map<string, PeerPresence>();
  private presence: PresenceTincan | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** The connection attempt in progress: its timeout and the settling of its promise. */
  private attempt: { client: Client; timer: NodeJS.Timeout; settle(err?: Error): void } | null = null;
  private readonly badPresenceLogged = new Set<string>();
  private readonly badSignalLogged = new Set<string>();
  private running = false;
  private online = false;
  /** Failed attempts (or lost connections) since the last login. */
  private failures = 0;
  private myFullJid: string | null = null;
  /** For `tincanctl status`: when the session came online, logins so far, the server of the last attempt. */
  private onlineSince: number | null = null;
  private logins = 0;
  private lastService: string | null = null;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly loginTimeoutMs: number;
  private readonly maxReconnectDelayMs: number;
  private readonly caPem: string | null;

  constructor(private readonly opts: XmppOptions) {
    super();
    this.log = opts.log;
    this.bareJid = `${opts.username}@${opts.domain}`.toLowerCase();
    this.pingIntervalMs = (opts.pingIntervalSec ?? 60) * 1000;
    this.pingTimeoutMs = Math.min(this.pingIntervalMs, MAX_PING_TIMEOUT_MS);
    this.loginTimeoutMs = opts.loginTimeoutMs ?? Math.min(Math.max(this.pingIntervalMs, 5000), 30_000);
    this.maxReconnectDelayMs = opts.maxReconnectDelayMs ?? this.pingIntervalMs / 2;
    this.caPem = opts.caFile ? readFileSync(opts.caFile, "utf8") : null;
    this.xmpp = this.createClient();
  }

  get fullJid(): string | null {
    return this.myFullJid;
  }

  /** The session as `tincanctl status` shows it. */
  status(): {
    server: string | null;
    jid: string | null;
    online: boolean;
    onlineSince: number | null;
    reconnects: number;
  } {
    const online = this.isOnline;
    return {
      server: this.lastService,
      jid: this.myFullJid,
      online,
      onlineSince: online ? this.onlineSince : null,
      reconnects: Math.max(0, this.logins - 1),
    };
  }

  get isOnline(): boolean {
    return this.online && this.xmpp.status === "online";
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
    if (this.running) return;
    this.running = true;
    this.failures = 0;
    await this.connect();
  }

  /** Sends unavailable presence and closes the session; no reconnect after this. */
  async stop(): Promise<void> {
    this.running = false;
    this.clearRetry();
    this.clearTimers();
    const x = this.xmpp;
    if (!this.xmppUsed || this.dropped.has(x)) return;
    this.dropped.add(x);
    this.endAttempt(x, new Error("the session was stopped"));
    this.online = false;
    if (x.status === "online") {
      await x.send(xml("presence", { type: "unavailable" })).catch(() => {});
      await x.stop().catch((err: Error) => this.log.debug("xmpp stop", { error: err.message }));
    }
    destroyTransport(x);
  }

  /**
   * Drops the current connection (or attempt) at once and logs in again without waiting, e.g.
   * because this host's addresses changed and the connection may be bound to one that is gone.
   */
  reconnectNow(reason: string): void {
    if (!this.running) return;
    if (this.xmppUsed && !this.dropped.has(this.xmpp)) {
      this.drop(this.xmpp, "xmpp reconnecting now", reason, 0);
    } else {
      this.log.info("xmpp reconnecting now", { why: reason });
      this.clearRetry();
      void this.connect().catch(() => {});
    }
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

  /** One connection attempt on a fresh client; on failure the retry is already scheduled when it rejects. */
  private connect(): Promise<void> {
    this.retryTimer = null;
    if (!this.running) return Promise.resolve();
    if (this.xmppUsed) this.xmpp = this.createClient();
    const x = this.xmpp;
    this.xmppUsed = true;
    return new Promise<void>((resolve, reject) => {
      const ms = this.loginTimeoutMs;
      // TCP connect to a black hole, a server that accepts and says nothing, a login stuck halfway:
      // every stage of an attempt is bounded by this one timer.
      const timer = setTimeout(
        () => this.drop(x, "xmpp login timed out; reconnecting", `not online after ${ms} ms`),
        ms,
      );
      this.attempt = { client: x, timer, settle: (err) => (err ? reject(err) : resolve()) };
      this.serviceForAttempt()
        .then((service) => {
          x.options.service = service;
          this.lastService = service;
          return x.start();
        })
        .then(
          () => this.endAttempt(x),
          // SASLError's message is the server's condition, e.g. "not-authorized".
          (err: Error) => this.drop(x, "xmpp login failed; reconnecting", describeError(err)),
        );
    });
  }

  /** The configured service, or the next of the domain's SRV targets (one further per failure). */
  private async serviceForAttempt(): Promise<string> {
    if (this.opts.service) return this.opts.service;
    const { services, fromSrv } = await xmppClientServices(this.opts.domain, this.opts.resolveSrv);
    const service = services[this.failures % services.length] as string;
    if (fromSrv) this.log.info("xmpp server from DNS SRV", { domain: this.opts.domain, service });
    else
      this.log.info("no DNS SRV record for the domain; trying the domain itself", {
        domain: this.opts.domain,
        service,
      });
    return service;
  }

  /** Settles the promise of `x`'s connection attempt, if it is still pending. */
  private endAttempt(x: Client, err?: Error): void {
    const a = this.attempt;
    if (!a || a.client !== x) return;
    this.attempt = null;
    clearTimeout(a.timer);
    a.settle(err);
  }

  /**
   * The one way out of a connection: tears down its socket, forgets the client and schedules the
   * next attempt (after `delayMs`, default the backoff for the failures so far).
   */
  private drop(x: Client, message: string, why: string, delayMs?: number): void {
    if (x !== this.xmpp || this.dropped.has(x)) return;
    this.dropped.add(x);
    this.endAttempt(x, new Error(why));
    const wasOnline = this.online;
    this.online = false;
    this.clearTimers();
    destroyTransport(x);
    if (!this.running) return;
    this.clearRetry();
    let delay = delayMs;
    if (delay === undefined) {
      this.failures++;
      delay = reconnectDelayMs(this.failures, this.maxReconnectDelayMs);
    }
    this.log.warn(message, { why, retryInMs: delay, failures: this.failures });
    this.retryTimer = setTimeout(() => void this.connect().catch(() => {}), delay);
    if (wasOnline) this.emit("offline");
  }

  private createClient(): Client {
    const opts = this.opts;
    const x = client({
      service: opts.service ?? "", // found by SRV before each attempt
      domain: opts.domain,
      username: opts.username,
      password: opts.password,
      ...(opts.resource ? { resource: opts.resource } : {}),
    });
    x.reconnect.stop(); // we reconnect ourselves, on a fresh client
    patchClient(x, { domain: opts.domain, caPem: this.caPem });
    if (x.streamManagement) x.streamManagement.requestAckInterval = this.pingIntervalMs;
    this.wire(x);
    return x;
  }

  private wire(x: Client): void {
    const live = () => x === this.xmpp && !this.dropped.has(x) && this.running;
    x.on("error", (err: Error) => {
      // Before login the attempt's rejection says why (once); afterwards a disconnect follows.
      if (!live()) return;
      if (this.online) this.log.warn("xmpp error", { error: describeError(err) });
      else this.log.debug("xmpp error while connecting", { error: describeError(err) });
    });
    x.on("online", (address: { toString(): string }) => {
      if (live()) void this.onOnline(x, address.toString());
    });
    x.on("disconnect", () => {
      if (!live()) return;
      if (this.online) this.drop(x, "xmpp disconnected; reconnecting", "the connection closed");
      // During an attempt its rejection (which follows) says why better: let it drop first.
      else setImmediate(() => this.drop(x, "xmpp disconnected; reconnecting", "the connection closed"));
    });
    x.on("stanza", (stanza: Element) => {
      if (!live()) return;
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
        const parsed = parseRosterItem(el);
        if (!parsed.ok) {
          this.log.debug("ignored a roster item", { error: parsed.error });
          continue;
        }
        const item = parsed.value;
        if (item.subscription === "remove") this.rosterItems.delete(item.jid);
        else this.rosterItems.set(item.jid, item);
      }
      this.emit("roster", this.roster());
      return true;
    });
  }

  private async onOnline(x: Client, address: string): Promise<void> {
    this.myFullJid = address;
    this.online = true;
    this.onlineSince = Date.now();
    this.logins++;
    this.failures = 0;
    this.log.info("xmpp online", { jid: address });
    const resource = address.slice(address.indexOf("/") + 1);
    if (this.opts.resource && resource !== this.opts.resource)
      // The resource names the device (SocialVPN derives the UID from it): peers check it.
      this.log.error("the server bound another resource than configured; peers may refuse this device", {
        configured: this.opts.resource,
        bound: resource,
      });
    this.schedulePing(x);
    try {
      const res = await x.iqCaller.request(
        xml("iq", { type: "get" }, xml("query", { xmlns: NS_ROSTER })),
        10_000,
      );
      if (x !== this.xmpp || !this.online) return;
      this.rosterItems.clear();
      for (const el of res.getChild("query", NS_ROSTER)?.getChildren("item") ?? []) {
        const parsed = parseRosterItem(el);
        if (!parsed.ok) this.log.debug("ignored a roster item", { error: parsed.error });
        else if (parsed.value.subscription !== "remove") this.rosterItems.set(parsed.value.jid, parsed.value);
      }
      this.emit("roster", this.roster());
    } catch (err) {
      if (x !== this.xmpp || !this.online) return;
      this.log.error("roster fetch failed", { error: (err as Error).message });
    }
    // Peers we knew from the last session come back through presence after ours; those that do not
    // within presenceSettleMs are reported offline (so a short XMPP outage does not tear links down).
    const stale = new Set(this.peersByFullJid.keys());
    for (const p of this.peersByFullJid.values()) (p as PeerPresence & { stale?: boolean }).stale = true;
    if (this.presence) await x.send(tincanPresence(this.presence)).catch(() => {});
    if (x !== this.xmpp || !this.online) return;
    this.emit("online", address);
    if (stale.size > 0) {
      this.settleTimer = setTimeout(() => {
        for (const full of stale) {
          const p = this.peersByFullJid.get(full) as (PeerPresence & { stale?: boolean }) | undefined;
          if (p?.stale) this.dropPeer(full);
        }
      }, this.opts.presenceSettleMs ?? 5000);
    }
  }

  /**
   * XEP-0199 pings every interval, whether or not stream management is on: a connection whose
   * packets are dropped (no FIN, no RST) is otherwise only noticed by TCP after many minutes.
   */
  private schedulePing(x: Client): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (x.status !== "online" || this.dropped.has(x)) return;
      const ping = xml("iq", { type: "get", to: this.opts.domain }, xml("ping", { xmlns: NS_PING }));
      x.iqCaller.request(ping, this.pingTimeoutMs).catch((err: Error) => {
        // A server that does not support ping still answers (with an error): only a timeout means dead.
        // No polite stream close, which would wait for an answer that does not come.
        if (/timeout/i.test(err.message) || err.name === "TimeoutError")
          this.drop(x, "xmpp ping timed out; reconnecting", `no answer in ${this.pingTimeoutMs} ms`);
      });
    }, this.pingIntervalMs);
    this.pingTimer.unref();
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
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
    // Our own account's other resources are our other devices: peers like any other.
    if (full === this.myFullJid) return;
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
}

/**
 * Tears down whatever socket the client uses, at once. @xmpp/tcp's socket is a net.Socket; after
 * STARTTLS (or with direct TLS) it is @xmpp/tls's wrapper, which has no destroy() of its own and
 * holds the tls.TLSSocket in `.socket` (destroying that also destroys the TCP socket under it).
 * No polite stream close: on a dead connection it would wait for an answer that never comes.
 */
function destroyTransport(x: Client): void {
  const s = x.socket as unknown as { destroy?(): void; socket?: { destroy?(): void } | null } | null;
  s?.socket?.destroy?.();
  s?.destroy?.();
}

function describeError(err: Error): string {
  const condition = (err as Error & { condition?: unknown }).condition;
  const text = err.message || (typeof condition === "string" ? condition : "") || err.name;
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

function sameTincan(a: PresenceTincan, b: PresenceTincan): boolean {
  return a.uid === b.uid && a.ipv4 === b.ipv4 && a.ipv6 === b.ipv6 && sameRoutes(a, b);
}

/** Whether two presences advertise the same prefixes (router mode), in the same order. */
export function sameRoutes(a: PresenceTincan, b: PresenceTincan): boolean {
  return (a.routes ?? []).join(" ") === (b.routes ?? []).join(" ");
}
