import { z } from "zod";

/** The text of a node UID (the Uid schema's pattern; for hot paths that test many UIDs without zod's cost). */
export const UID_PATTERN = /^[0-9a-f]{32}$/;
/** Node UID: 128 bits as 32 lowercase hex chars (see README.md "Identities and admission"). */
export const Uid = z.string().regex(UID_PATTERN, "must be 32 lowercase hex characters");
export type Uid = z.infer<typeof Uid>;

export const Ipv4 = z.ipv4();
export const Ipv6 = z.ipv6();
export const IpAddress = z.union([z.ipv4(), z.ipv6()]);

/** An interface address with its prefix length, e.g. "10.10.0.5/16" (host bits allowed). */
export const Ipv4Cidr = z.cidrv4();
export const Ipv6Cidr = z.cidrv6();
export const Prefix = z.union([z.cidrv4(), z.cidrv6()]);

/** "host:port" with an IPv4 address or a name, e.g. "127.0.0.1:5800". */
export const HostPort = z
  .string()
  .regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be "host:port"')
  .refine((s) => {
    const port = Number(s.slice(s.lastIndexOf(":") + 1));
    return port > 0 && port < 65536;
  }, "port must be 1..65535");

/** An address to listen on: "ip:port" with an IPv4 address, never a host name (no lookup at bind time). */
export const ListenAddress = HostPort.refine(
  (s) => z.ipv4().safeParse(s.slice(0, s.lastIndexOf(":"))).success,
  'must be "ip:port" with an IPv4 address, not a host name',
);

export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

export const LogLevel = z.enum(["error", "warn", "info", "debug"]);
export type LogLevel = z.infer<typeof LogLevel>;
export const LogFormat = z.enum(["text", "json"]);
export type LogFormat = z.infer<typeof LogFormat>;

/** Formats zod issues as "field.path: message; ..." so errors name the field. */
export function describeIssues(error: z.ZodError, root = ""): string {
  return error.issues
    .map((issue) => {
      const path = [root, ...issue.path.map(String)].filter(Boolean).join(".");
      return `${path || "(root)"}: ${issue.message}`;
    })
    .join("; ");
}

/**
 * Receive buffer of both ends of the RPC socket pair. Notifications come in bursts (a GroupVPN mesh
 * forming sends an icc announcement per link to every neighbour): the kernel's default 208 KiB
 * overflowed while the event loop was busy, and replies lost with them made calls time out. The
 * kernel caps it at net.core.rmem_max.
 */
export const RPC_SOCKET_BUFFER = 4 * 1024 * 1024;

/**
 * The kernel's grant for an RPC socket's receive buffer, with the sysctl to raise it, when it is
 * below RPC_SOCKET_BUFFER (Linux reports twice what it granted); null when the buffer is big enough.
 */
export function smallRpcBuffer(socket: {
  getRecvBufferSize(): number;
}): { bytes: number; fix: string } | null {
  const reported = socket.getRecvBufferSize();
  if (reported >= RPC_SOCKET_BUFFER) return null;
  return { bytes: reported / 2, fix: `sysctl -w net.core.rmem_max=${RPC_SOCKET_BUFFER}` };
}
