// The STUN (RFC 8489) and TURN (RFC 8656) exchanges `tincanctl netcheck` makes over a dgram socket:
// Binding, and Allocate / Refresh with long-term credentials (the codec is @tincan/protocol's).
import type { Socket } from "node:dgram";
import {
  Attr,
  decodeStun,
  type Endpoint,
  encodeStun,
  errorCode,
  longTermKey,
  mappedAddress,
  newTransactionId,
  readAddress,
  type StunMessage,
  StunType,
  withIntegrity,
} from "@tincan/protocol";

/**
 * Sends `msg` to host:port from `socket` (retransmitting every 500 ms) and resolves with the reply of
 * the same transaction, or null after timeoutMs.
 */
export function stunRequest(
  socket: Socket,
  to: Endpoint,
  msg: Buffer,
  timeoutMs: number,
): Promise<StunMessage | null> {
  const id = msg.subarray(8, 20);
  return new Promise((resolve) => {
    const send = () => socket.send(msg, to.port, to.address, () => {});
    const onMessage = (buf: Buffer) => {
      const m = decodeStun(buf);
      if (m?.transactionId.equals(id)) done(m);
    };
    const resend = setInterval(send, 500);
    const timer = setTimeout(() => done(null), timeoutMs);
    const done = (m: StunMessage | null) => {
      clearInterval(resend);
      clearTimeout(timer);
      socket.off("message", onMessage);
      resolve(m);
    };
    socket.on("message", onMessage);
    send();
  });
}

export type AllocateOutcome =
  | { ok: true; relayed: Endpoint | null; mapped: Endpoint | null }
  | { ok: false; error: string };

/**
 * TURN Allocate (UDP) with long-term credentials: the unauthenticated request gets 401 with realm
 * and nonce, the signed one the relayed address. The allocation is released at once (Refresh, lifetime 0).
 */
export async function turnAllocate(
  socket: Socket,
  to: Endpoint,
  creds: { username: string; password: string },
  timeoutMs: number,
): Promise<AllocateOutcome> {
  const transport = Buffer.from([17, 0, 0, 0]); // UDP
  const first = await stunRequest(
    socket,
    to,
    encodeStun(StunType.AllocateRequest, newTransactionId(), [[Attr.RequestedTransport, transport]]),
    timeoutMs,
  );
  if (!first) return { ok: false, error: "no answer" };
  const challenge = errorCode(first);
  const realm = first.attrs.get(Attr.Realm)?.toString("utf8");
  const nonce = first.attrs.get(Attr.Nonce);
  if (first.type === StunType.AllocateSuccess)
    return { ok: true, relayed: relayedAddress(first), mapped: mappedAddress(first) };
  if (challenge?.code !== 401 || realm === undefined || !nonce)
    return { ok: false, error: challenge ? `${challenge.code} ${challenge.text}` : "unexpected reply" };
  const key = longTermKey(creds.username, realm, creds.password);
  const signed = (type: number, attrs: Array<[number, Buffer]>) =>
    withIntegrity(
      encodeStun(type, newTransactionId(), [
        ...attrs,
        [Attr.Username, Buffer.from(creds.username)],
        [Attr.Realm, Buffer.from(realm)],
        [Attr.Nonce, nonce],
      ]),
      key,
    );
  const reply = await stunRequest(
    socket,
    to,
    signed(StunType.AllocateRequest, [[Attr.RequestedTransport, transport]]),
    timeoutMs,
  );
  if (!reply) return { ok: false, error: "no answer to the authenticated request" };
  if (reply.type !== StunType.AllocateSuccess) {
    const e = errorCode(reply);
    return { ok: false, error: e ? `${e.code} ${e.text}` : "unexpected reply" };
  }
  const zero = Buffer.alloc(4);
  await stunRequest(socket, to, signed(StunType.RefreshRequest, [[Attr.Lifetime, zero]]), 1000);
  return { ok: true, relayed: relayedAddress(reply), mapped: mappedAddress(reply) };
}

function relayedAddress(m: StunMessage): Endpoint | null {
  return readAddress(m.attrs.get(Attr.XorRelayedAddress), true, m.transactionId);
}
