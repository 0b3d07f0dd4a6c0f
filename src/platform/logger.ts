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
 * Keys whose values are credentials wherever they appear in a logged object, compared without case: HTTP
 * authentication headers, tokens and passwords, Docker config auths, and the data of Secrets. Code logs names,
 * counts and reasons, never objects it did not build; this is the second line of defence, and the third is
 * `scrubText` over every string, messages included.
 */
const SECRET_KEYS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'password',
  'passwd',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'identitytoken',
  'registrytoken',
  'auth',
  'auths',
  'credentials',
  'data',
  'stringdata',
  '.dockerconfigjson',
  '.dockercfg',
  'client-key-data',
]);

export const REDACTED = '[REDACTED]';
/** Deeper than any object the code builds for a log line. */
const MAX_DEPTH = 8;

/** HTTP credentials written out in text: `Bearer <token>`, `Basic <base64>`, `https://user:password@host`. */
function scrubText(text: string): string {
  return text
    .replace(/\b(Bearer|Basic)\s+[^\s"',;]+/gi, `$1 ${REDACTED}`)
    .replace(/(\/\/)[^\s/@"']+:[^\s/@"']+@/g, `$1${REDACTED}@`);
}

/** A copy of `value` with secret keys censored and every string scrubbed; Errors become plain objects. */
function censor(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Object]';
  seen.add(value);
  let result: unknown;
  if (Array.isArray(value)) {
    result = value.map((item) => censor(item, depth + 1, seen));
  } else {
    const entries: [string, unknown][] =
      value instanceof Error
        ? [
            ['type', value.name],
            ['message', value.message],
            ['stack', value.stack],
            ...(value.cause === undefined ? [] : [['cause', value.cause] as [string, unknown]]),
            ...Object.entries(value),
          ]
        : Object.entries(value);
    result = Object.fromEntries(
      entries.map(([key, item]) => [
        key,
        SECRET_KEYS.has(key.toLowerCase()) ? REDACTED : censor(item, depth + 1, seen),
      ]),
    );
  }
  seen.delete(value);
  return result;
}

const censorFields = (fields: Record<string, unknown>): Record<string, unknown> =>
  censor(fields, 0, new WeakSet()) as Record<string, unknown>;

/** JSON lines with ISO times and string levels, as Kubernetes log pipelines expect; no credential gets through. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const config = {
    level: options.level ?? 'info',
    base: censorFields(options.base ?? {}),
    timestamp: stdTimeFunctions.isoTime,
    // Errors are plain objects already (censor): pino's serializer would name their type `Object`.
    serializers: { err: (value: unknown) => value },
    formatters: {
      level: (label: string) => ({ level: label }),
      log: censorFields,
    },
    hooks: {
      logMethod(this: Logger, args: unknown[], method: (...args: unknown[]) => void): void {
        if (args.length === 0) return;
        const [first, ...rest] = args;
        // pino would take the message of an Error logged alone unscrubbed: do what it does, scrubbed.
        const leading =
          first instanceof Error
            ? [{ err: first }, ...(typeof rest[0] === 'string' ? [] : [first.message])]
            : [first];
        method.apply(
          this,
          [...leading, ...rest].map((arg) => (typeof arg === 'string' ? scrubText(arg) : arg)),
        );
      },
    },
  };
  const logger = options.destination === undefined ? pino(config) : pino(config, options.destination);
  // pino passes a child's bindings through no formatter: censor them on the way in (children inherit this).
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the child as `this`, as pino does
  const pinoChild = logger.child;
  logger.child = function (this: Logger, bindings, childOptions) {
    return pinoChild.call(this, censorFields(bindings), childOptions);
  } as Logger['child'];
  return logger;
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
