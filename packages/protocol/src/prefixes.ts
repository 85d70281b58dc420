import { type IpPrefix, parsePrefix, prefixContains } from "./ip.js";

/** Whether two prefixes share an address (one contains the other's network). */
export function prefixesOverlap(a: IpPrefix | string, b: IpPrefix | string): boolean {
  const pa = typeof a === "string" ? parsePrefix(a) : a;
  const pb = typeof b === "string" ? parsePrefix(b) : b;
  if (pa.version !== pb.version) return false;
  return pa.length <= pb.length ? prefixContains(pa, pb.network) : prefixContains(pb, pa.network);
}

/** Index pairs [i, j] (i < j) of the prefixes in `list` that overlap; unparsable entries are skipped. */
export function overlappingPrefixes(list: readonly string[]): Array<[number, number]> {
  const parsed = list.map((t) => {
    try {
      return parsePrefix(t);
    } catch {
      return null;
    }
  });
  const out: Array<[number, number]> = [];
  for (let j = 0; j < parsed.length; j++) {
    for (let i = 0; i < j; i++) {
      const a = parsed[i];
      const b = parsed[j];
      if (a && b && prefixesOverlap(a, b)) out.push([i, j]);
    }
  }
  return out;
}
