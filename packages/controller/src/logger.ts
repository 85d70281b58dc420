import { createWinston, type LogFormat, type LogLevel } from "@tincan/protocol";
import type winston from "winston";

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
  readonly level: LogLevel;
  close(): void;
}

/**
 * Creates the process logger on stderr: text lines
 * (`2026-01-01T00:00:00.000Z info [component] message {"meta":1}`) or JSON lines (@tincan/protocol createWinston).
 */
export function createLogger(
  level: LogLevel = "info",
  opts: { silent?: boolean; format?: LogFormat; stream?: NodeJS.WritableStream } = {},
): RootLogger {
  const logger = createWinston({ level, ...opts });
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
    get level() {
      return logger.level as LogLevel;
    },
    close: () => logger.close(),
  };
}

/** A logger that drops everything (tests, library use without logging). */
export const nullLog: Log = { error() {}, warn() {}, info() {}, debug() {} };
