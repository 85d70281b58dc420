import type { LogLevel } from "@tincan/protocol";
import winston from "winston";

/**
 * The logging surface every controller module takes. A winston logger satisfies it; tests pass fakes.
 * Meta is an object printed as JSON after the message. Never log per packet.
 */
export interface Log {
  error(message: string, meta?: object): void;
  warn(message: string, meta?: object): void;
  info(message: string, meta?: object): void;
  debug(message: string, meta?: object): void;
}

export interface RootLogger extends Log {
  /** A logger whose lines carry `[component]`. */
  component(name: string): Log;
  /** Changes the level of this logger and all its component loggers. */
  setLevel(level: LogLevel): void;
  close(): void;
}

const lineFormat = winston.format.printf((info) => {
  const { level, message, timestamp, component, ...meta } = info as Record<string, unknown>;
  // winston keeps its own bookkeeping under symbol keys; Object.keys ignores them.
  const extra = Object.keys(meta).length > 0 ? ` ${safeJson(meta)}` : "";
  const comp = typeof component === "string" ? ` [${component}]` : "";
  return `${String(timestamp)} ${String(level)}${comp} ${String(message)}${extra}`;
});

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => {
      if (v instanceof Error) return { name: v.name, message: v.message };
      if (typeof v === "bigint") return v.toString();
      return v;
    });
  } catch {
    return '"<unserialisable meta>"';
  }
}

/**
 * Creates the process logger: `2026-01-01T00:00:00.000Z info [component] message {"meta":1}` on stderr.
 */
export function createLogger(level: LogLevel = "info", opts: { silent?: boolean } = {}): RootLogger {
  const logger = winston.createLogger({
    level,
    levels: { error: 0, warn: 1, info: 2, debug: 3 },
    format: winston.format.combine(winston.format.timestamp(), lineFormat),
    transports: [
      new winston.transports.Console({
        stderrLevels: ["error", "warn", "info", "debug"],
        silent: opts.silent ?? false,
      }),
    ],
  });
  const wrap = (l: winston.Logger): Log => ({
    error: (m, meta) => l.error(m, meta ?? {}),
    warn: (m, meta) => l.warn(m, meta ?? {}),
    info: (m, meta) => l.info(m, meta ?? {}),
    debug: (m, meta) => l.debug(m, meta ?? {}),
  });
  return {
    ...wrap(logger),
    component: (name) => wrap(logger.child({ component: name })),
    setLevel: (l) => {
      logger.level = l;
    },
    close: () => logger.close(),
  };
}

/** A logger that drops everything (tests, library use without logging). */
export const nullLog: Log = { error() {}, warn() {}, info() {}, debug() {} };
