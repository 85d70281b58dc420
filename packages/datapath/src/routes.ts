import { prefixBytes } from "@tincan/protocol";

export interface Route<T> {
  prefix: string;
  value: T;
}

interface TrieNode<T> {
  zero: TrieNode<T> | null;
  one: TrieNode<T> | null;
  route: Route<T> | null;
}

function newNode<T>(): TrieNode<T> {
  return { zero: null, one: null, route: null };
}

/**
 * Longest-prefix-match table for IPv4 and IPv6 (a binary trie per family). Lookups read the
 * address straight from a packet buffer, so the packet path allocates nothing.
 */
export class PrefixTable<T> {
  private readonly roots = { 4: newNode<T>(), 6: newNode<T>() };
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Inserts or replaces the route for `prefix` ("10.10.0.0/16", "fd00::1/128"). Returns its canonical text. */
  set(prefix: string, value: T): string {
    const p = prefixBytes(prefix);
    const canonical = `${p.network}/${p.length}`;
    let node = this.roots[p.version];
    for (let bit = 0; bit < p.length; bit++) {
      const one = ((p.bytes[bit >> 3] as number) & (0x80 >> (bit & 7))) !== 0;
      let next = one ? node.one : node.zero;
      if (!next) {
        next = newNode<T>();
        if (one) node.one = next;
        else node.zero = next;
      }
      node = next;
    }
    if (!node.route) this.count++;
    node.route = { prefix: canonical, value };
    return canonical;
  }

  /** Removes the exact prefix; returns whether it existed. */
  delete(prefix: string): boolean {
    const p = prefixBytes(prefix);
    const path: TrieNode<T>[] = [];
    let node: TrieNode<T> | null = this.roots[p.version];
    for (let bit = 0; bit < p.length && node; bit++) {
      path.push(node);
      node = ((p.bytes[bit >> 3] as number) & (0x80 >> (bit & 7))) !== 0 ? node.one : node.zero;
    }
    if (!node?.route) return false;
    node.route = null;
    this.count--;
    // Prune empty branches so the trie does not keep dead nodes after churn.
    for (let i = path.length - 1; i >= 0 && !node.route && !node.zero && !node.one; i--) {
      const parent = path[i] as TrieNode<T>;
      if (parent.one === node) parent.one = null;
      else parent.zero = null;
      node = parent;
    }
    return true;
  }

  /** Exact-match read of a prefix. */
  get(prefix: string): T | undefined {
    const p = prefixBytes(prefix);
    let node: TrieNode<T> | null = this.roots[p.version];
    for (let bit = 0; bit < p.length && node; bit++) {
      node = ((p.bytes[bit >> 3] as number) & (0x80 >> (bit & 7))) !== 0 ? node.one : node.zero;
    }
    return node?.route?.value;
  }

  /**
   * Longest-prefix match of the address stored at buf[off..] (4 or 16 bytes per `version`); with
   * `usable`, among the routes it accepts (pass a function made once: the packet path allocates nothing).
   */
  lookup(buf: Uint8Array, off: number, version: number, usable?: (value: T) => boolean): Route<T> | null {
    let node: TrieNode<T> | null = version === 4 ? this.roots[4] : version === 6 ? this.roots[6] : null;
    let best: Route<T> | null = null;
    const bits = version === 4 ? 32 : 128;
    for (let bit = 0; node; bit++) {
      if (node.route && (usable === undefined || usable(node.route.value))) best = node.route;
      if (bit === bits) break;
      node = ((buf[off + (bit >> 3)] as number) & (0x80 >> (bit & 7))) !== 0 ? node.one : node.zero;
    }
    return best;
  }

  /** Longest-prefix match of an address in text form (control path). */
  lookupText(address: string): Route<T> | null {
    const p = prefixBytes(address);
    return this.lookup(p.bytes, 0, p.version);
  }

  *entries(): Generator<Route<T>> {
    for (const root of [this.roots[4], this.roots[6]]) {
      const stack: TrieNode<T>[] = [root];
      while (stack.length) {
        const node = stack.pop() as TrieNode<T>;
        if (node.route) yield node.route;
        if (node.one) stack.push(node.one);
        if (node.zero) stack.push(node.zero);
      }
    }
  }
}
