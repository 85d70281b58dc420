// Minimal types for @xmpp/client 0.14 (the package ships none). Internal to this package: no public
// API of @tincan/controller mentions these types.
declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events";

  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    text(): string;
    append(...children: Array<Element | string>): Element;
    toString(): string;
  }

  export function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: Array<Element | string | undefined>
  ): Element;

  export interface JID {
    local: string;
    domain: string;
    resource: string;
    bare(): JID;
    toString(): string;
  }
  export function jid(address: string): JID;

  export interface IqCallerContext {
    stanza: Element;
    element: Element;
    from: JID | null;
  }

  export interface Client extends EventEmitter {
    status: string;
    jid: JID | null;
    socket: unknown;
    options: { domain: string; service: string; lang?: string };
    transports: Array<{ prototype: { Socket: new () => unknown; socketParameters(s: string): unknown } }>;
    start(): Promise<JID>;
    stop(): Promise<void>;
    disconnect(): Promise<void>;
    send(el: Element): Promise<void>;
    sendReceive(el: Element, timeout?: number): Promise<Element>;
    restart(): Promise<void>;
    _attachSocket(socket: unknown): void;
    iqCaller: { request(el: Element, timeout?: number): Promise<Element> };
    iqCallee: {
      get(ns: string, name: string, handler: (ctx: IqCallerContext) => unknown): void;
      set(ns: string, name: string, handler: (ctx: IqCallerContext) => unknown): void;
    };
    reconnect: EventEmitter & { delay: number; start(): void; stop(): void };
    streamManagement?: { enabled: boolean; requestAckInterval: number; timeout: number };
  }

  export function client(options: {
    service: string;
    domain: string;
    username: string;
    password: string;
    resource?: string;
  }): Client;
}
