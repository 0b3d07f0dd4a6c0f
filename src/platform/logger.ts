import { pino, stdTimeFunctions, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  readonly level?: LevelWithSilent;
  /** Where JSON lines go; stdout by default. */
  readonly destination?: DestinationStream;
  /** Fields on every line, e.g. the component. */
  readonly base?: Record<string, unknown>;
}

/**
 * Paths that could carry a credential if an object were ever logged whole. Code logs names, counts and reasons,
 * never objects it did not build; this is the second line of defence.
 */
const redactPaths = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'password',
  '*.password',
  'token',
  '*.token',
  'auth',
  '*.auth',
  'credentials',
  '*.credentials',
  'data',
  '*.data',
  '*.identitytoken',
];

/** JSON lines with ISO times and string levels, as Kubernetes log pipelines expect. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const config = {
    level: options.level ?? 'info',
    base: options.base ?? {},
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    redact: { paths: redactPaths, censor: '[REDACTED]' },
  };
  return options.destination === undefined ? pino(config) : pino(config, options.destination);
}

export const LOG_LEVELS: readonly LevelWithSilent[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];
