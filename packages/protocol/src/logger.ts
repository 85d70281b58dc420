import winston from "winston";
import type { LogFormat, LogLevel } from "./common.js";

export const LOG_LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Meta values JSON cannot carry as they are: errors as {name, message}, bigints as strings. */
function jsonSafe(_key: string, v: unknown): unknown {
  if (v instanceof Error) return { name: v.name, message: v.message };
  if (typeof v === "bigint") return v.toString();
  return v;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, jsonSafe);
  } catch {
    return '"<unserialisable meta>"';
  }
}

/** `2026-01-01T00:00:00.000Z info [component] message {"meta":1}` */
const textLine = winston.format.printf((info) => {
  const { level, message, timestamp, component, ...meta } = info as Record<string, unknown>;
  // winston keeps its own bookkeeping under symbol keys; Object.keys ignores them.
  const extra = Object.keys(meta).length > 0 ? ` ${safeJson(meta)}` : "";
  const comp = typeof component === "string" ? ` [${component}]` : "";
  return `${String(timestamp)} ${String(level)}${comp} ${String(message)}${extra}`;
});

/** One JSON object per line: `timestamp`, `level`, `component`, `message`, then the fields. */
const jsonLine = winston.format.printf((info) => {
  const { level, message, timestamp, component, ...meta } = info as Record<string, unknown>;
  return safeJson({ timestamp, level, component, message: String(message), ...meta });
});

export function logFormat(format: LogFormat): winston.Logform.Format {
  return winston.format.combine(winston.format.timestamp(), format === "json" ? jsonLine : textLine);
}

export interface WinstonOptions {
  level: LogLevel;
  format?: LogFormat;
  /** Set on every line (the datapath's "tincan"); controllers set it per module with child loggers. */
  component?: string;
  silent?: boolean;
  /** Where lines go (tests); default stderr. */
  stream?: NodeJS.WritableStream;
}

/** The process logger of every binary (stderr, levels error..debug, text or JSON lines). */
export function createWinston(opts: WinstonOptions): winston.Logger {
  const transport = opts.stream
    ? new winston.transports.Stream({ stream: opts.stream, silent: opts.silent ?? false })
    : new winston.transports.Console({
        stderrLevels: Object.keys(LOG_LEVELS),
        silent: opts.silent ?? false,
      });
  return winston.createLogger({
    level: opts.level,
    levels: LOG_LEVELS,
    format: logFormat(opts.format ?? "text"),
    ...(opts.component ? { defaultMeta: { component: opts.component } } : {}),
    transports: [transport],
  });
}

/**
 * Run-time log level: SIGUSR1 raises it to `debug`, SIGUSR2 sets the configured level again.
 * Returns a function that removes the handlers.
 */
export function handleLogLevelSignals(
  setLevel: (level: LogLevel) => void,
  configured: LogLevel,
  proc: Pick<NodeJS.Process, "on" | "off"> = process,
): () => void {
  const raise = () => setLevel("debug");
  const restore = () => setLevel(configured);
  proc.on("SIGUSR1", raise);
  proc.on("SIGUSR2", restore);
  return () => {
    proc.off("SIGUSR1", raise);
    proc.off("SIGUSR2", restore);
  };
}
