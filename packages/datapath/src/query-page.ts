import { MAX_RPC_DATAGRAM, RpcErrorCode } from "@tincan/protocol";
import { rpcError } from "./errors.js";

/** Bytes of a reply left for the envelope (jsonrpc, id of up to 256 characters). */
const ENVELOPE_RESERVE = 1024;
const BUDGET = MAX_RPC_DATAGRAM - ENVELOPE_RESERVE;

/**
 * One page of a query's items: [offset, offset + limit), cut short where the next item would make the
 * reply too large for one datagram (an empty page means the end). Without offset and limit, the whole
 * list, or ResponseTooLarge when it does not fit.
 */
export function pageToFit<T>(items: readonly T[], p: { offset?: number; limit?: number }, what: string): T[] {
  const paged = p.offset !== undefined || p.limit !== undefined;
  const start = p.offset ?? 0;
  const end = Math.min(items.length, p.limit === undefined ? items.length : start + p.limit);
  const out: T[] = [];
  let bytes = 2;
  for (let i = start; i < end; i++) {
    const item = items[i] as T;
    bytes += Buffer.byteLength(JSON.stringify(item)) + 1;
    if (bytes > BUDGET && out.length > 0) {
      if (paged) break;
      throw rpcError(
        RpcErrorCode.ResponseTooLarge,
        `${items.length} ${what} do not fit in one datagram: ask for pages with params offset and limit`,
      );
    }
    out.push(item);
  }
  return out;
}
