/**
 * Every patch of @xmpp/client 0.14 internals, in one place, applied to each client `XmppSession`
 * creates (`patchClient`). Each one says what it works around and where that is tracked upstream;
 * drop it when the upstream fix is in the version we use (the tests in xmpp.test.ts fail when a
 * patch stops applying).
 *
 * Why run-time patches and not `pnpm patch` files: two of the three need this session's settings (the
 * CA, the domain), and a run-time patch holds whatever installs the packages (a pnpm patch is silently
 * lost by npm, a bundler or a vendored node_modules). Each patch finds the internal it needs by shape
 * and patches a shared prototype once.
 */
import { pbkdf2 } from "node:crypto";
import { rootCertificates } from "node:tls";
import { promisify } from "node:util";
import type { Client } from "@xmpp/client";

export interface ClientPatchOptions {
  /** Domain the client logs in to (the TLS server name the private CA is trusted for). */
  domain: string;
  /** A private CA (PEM) trusted for `domain`, besides the system roots; null: system roots only. */
  caPem: string | null;
}

export function patchClient(x: Client, opts: ClientPatchOptions): void {
  ignoreDataAfterParserDetached(x);
  if (opts.caPem) trustCa(x, opts.caPem, opts.domain);
  useNativeScramKeyDerivation(x);
}

// ---- 1. socket data after disconnect -----------------------------------------------------------------

type DataHandler = (this: { parser: unknown }, data: Buffer) => void;
const patchedConnections = new WeakSet<object>();

/**
 * @xmpp/connection: data can still arrive after disconnect() detached the stream parser (a stream
 * close that timed out); `_onData` then throws from the socket's data handler and the process dies.
 * Upstream: xmppjs/xmpp.js#860 ("null parser on stop()"), fixed by PR #1100 after 0.14.0. The
 * connection binds `this._onData` when it attaches a socket, so the prototype's method is patched.
 */
function ignoreDataAfterParserDetached(x: Client): void {
  let proto: object | null = Object.getPrototypeOf(x);
  while (proto && !Object.hasOwn(proto, "_onData")) proto = Object.getPrototypeOf(proto);
  if (!proto) throw new Error("@xmpp/connection has no _onData");
  if (patchedConnections.has(proto)) return;
  patchedConnections.add(proto);
  const owner = proto as { _onData: DataHandler };
  const onData = owner._onData;
  owner._onData = function (this: { parser: unknown }, data: Buffer) {
    if (!this.parser) return;
    onData.call(this, data);
  };
}

// ---- 2. a private CA for STARTTLS and direct TLS -----------------------------------------------------

type TlsSocketClass = { prototype: { connect(options: Record<string, unknown>): void } };
const caByServerName = new Map<string, string[]>();
const patchedSocketClasses = new WeakSet<object>();

/**
 * Trusts a private CA for this server name, without turning verification off.
 * @xmpp/starttls upgrades with `tls.connect({socket, host: domain})` and takes no TLS options
 * (upstream: xmppjs/xmpp.js#598, no way to pass TLS options / trust a self-signed server; the
 * server name of STARTTLS: PR #579, open), and Node 20 cannot change the default CA store at run
 * time. So the TLS socket class of @xmpp/tls (used by STARTTLS and by direct TLS) gets `ca` added
 * for connections to this domain. Direct TLS (xmpps://) dials the service host, so its transport
 * also names the domain as the TLS server name. @xmpp's own STARTTLS step runs unchanged (an
 * earlier version answered STARTTLS itself, and a timed-out attempt there could leave the next
 * login with two SASL exchanges on one stream).
 */
function trustCa(x: Client, caPem: string, domain: string): void {
  const ca = [...rootCertificates, caPem];
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

// ---- 3. SCRAM-SHA-1 key derivation -------------------------------------------------------------------

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
 * the event loop: sasl-scram-sha-1 1.4 (mwild1/js-sasl-scram-sha-1, used by @xmpp/sasl-scram-sha-1)
 * runs it as a loop of WebCrypto HMAC calls in `Hi()`, ~1.4 s of CPU per login here, which made 20
 * controllers starting together time out. No upstream issue tracks it (searched xmpp.js and
 * js-sasl-scram-sha-1). The result goes in through the library's own cached-credentials input
 * (`salt` + `saltedPassword`), so the protocol stays its.
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
