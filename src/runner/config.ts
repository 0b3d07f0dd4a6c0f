import { UsageError } from '../cli/io.ts';
import type { LevelWithSilent } from 'pino';
import { buildSignConfig, BuildSignConfigError, type BuildSignConfig } from '../buildsign/config.ts';
import { parseTargetPlatform } from '../image/platform.ts';
import { LOG_LEVELS } from '../platform/logger.ts';

/**
 * The runner's configuration: every setting is a flag with an environment fallback (flag > environment >
 * default), checked once at start-up so a bad value is a usage error naming the flag, never a crash later.
 */
export interface RunnerConfig {
  readonly kubeconfig?: string;
  /** Module validations running at once, over all resources. */
  readonly concurrency: number;
  /** A failed module is validated again this long after its last attempt (the seed's "next loop"). */
  readonly retryIntervalMs: number;
  /** Label selector limiting which PreflightValidationOCPs this runner serves; undefined = all. */
  readonly resourceSelector?: string;
  /** Namespaces whose Modules are validated; empty = all. */
  readonly namespaces: readonly string[];
  /** Target nodes' architecture (image index and release selection). */
  readonly architecture: string;
  /** `namespace/name` of the cluster pull secret; undefined = none. A missing Secret is fine. */
  readonly pullSecret?: { readonly namespace: string; readonly name: string };
  /** PEM files of extra CAs trusted for registries. */
  readonly caFiles: readonly string[];
  /** `SOURCE=MIRROR` rules from the command line. */
  readonly mirrors: readonly string[];
  /** Also read ImageDigestMirrorSet / ImageTagMirrorSet / ImageContentSourcePolicy objects when the APIs exist. */
  readonly clusterMirrors: boolean;
  /** Registries (`host:port`) that may be reached over plain HTTP. */
  readonly insecureRegistries: readonly string[];
  readonly leaderElection: {
    readonly enabled: boolean;
    readonly namespace?: string;
    readonly leaseName: string;
    readonly identity?: string;
    readonly leaseDurationSeconds: number;
    readonly renewDeadlineMs: number;
    readonly retryPeriodMs: number;
  };
  /** host:port of /healthz, /readyz and /metrics. */
  readonly opsAddress: { readonly host: string; readonly port: number };
  readonly validationTimeoutMs: number;
  /** How long validation results wait for others before the status is written. */
  readonly statusBatchDelayMs: number;
  readonly relistIntervalMs: number;
  readonly watchIdleTimeoutMs: number;
  /** Namespace of the Events recorded on (cluster-scoped) resources. */
  readonly eventsNamespace: string;
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LevelWithSilent;
  /** How Build and Sign Jobs run; checked with buildSignConfig, defaults from DEFAULT_BUILD_SIGN_CONFIG. */
  readonly buildSign: BuildSignConfig;
}

/** The raw option values as commander hands them over (strings, lists, booleans; undefined when not given). */
export interface RunnerFlags {
  readonly kubeconfig?: string;
  readonly concurrency?: string;
  readonly retryInterval?: string;
  readonly namespaces?: string;
  readonly resourceSelector?: string;
  readonly arch?: string;
  readonly pullSecret?: string;
  readonly caFile?: readonly string[];
  readonly mirror?: readonly string[];
  readonly clusterMirrors?: boolean;
  readonly insecureRegistry?: readonly string[];
  readonly leaderElect?: boolean;
  readonly leaderElectionNamespace?: string;
  readonly leaderElectionId?: string;
  readonly leaseDuration?: string;
  readonly renewDeadline?: string;
  readonly retryPeriod?: string;
  readonly opsAddress?: string;
  readonly validationTimeout?: string;
  readonly statusBatchDelay?: string;
  readonly relistInterval?: string;
  readonly watchIdleTimeout?: string;
  readonly eventsNamespace?: string;
  readonly shutdownTimeout?: string;
  readonly logLevel?: string;
  readonly kanikoImage?: string;
  readonly signerImage?: string;
  readonly signFilePath?: string;
  readonly jobBackoffLimit?: string;
  readonly jobActiveDeadline?: string;
  readonly jobTtlAfterFinished?: string;
  readonly jobServiceAccount?: string;
}

/** The environment variable behind each flag. */
export const RunnerEnv = {
  concurrency: 'KMM_PREFLIGHT_CONCURRENCY',
  retryInterval: 'KMM_PREFLIGHT_RETRY_INTERVAL',
  namespaces: 'KMM_PREFLIGHT_NAMESPACES',
  resourceSelector: 'KMM_PREFLIGHT_RESOURCE_SELECTOR',
  arch: 'KMM_PREFLIGHT_ARCH',
  pullSecret: 'KMM_PREFLIGHT_PULL_SECRET',
  caFile: 'KMM_PREFLIGHT_CA_FILES',
  mirror: 'KMM_PREFLIGHT_MIRRORS',
  clusterMirrors: 'KMM_PREFLIGHT_CLUSTER_MIRRORS',
  insecureRegistry: 'KMM_PREFLIGHT_INSECURE_REGISTRIES',
  leaderElect: 'KMM_PREFLIGHT_LEADER_ELECT',
  leaderElectionNamespace: 'KMM_PREFLIGHT_LEADER_ELECTION_NAMESPACE',
  leaderElectionId: 'KMM_PREFLIGHT_LEADER_ELECTION_ID',
  leaseDuration: 'KMM_PREFLIGHT_LEASE_DURATION',
  renewDeadline: 'KMM_PREFLIGHT_RENEW_DEADLINE',
  retryPeriod: 'KMM_PREFLIGHT_RETRY_PERIOD',
  opsAddress: 'KMM_PREFLIGHT_OPS_ADDRESS',
  validationTimeout: 'KMM_PREFLIGHT_VALIDATION_TIMEOUT',
  statusBatchDelay: 'KMM_PREFLIGHT_STATUS_BATCH_DELAY',
  relistInterval: 'KMM_PREFLIGHT_RELIST_INTERVAL',
  watchIdleTimeout: 'KMM_PREFLIGHT_WATCH_IDLE_TIMEOUT',
  eventsNamespace: 'KMM_PREFLIGHT_EVENTS_NAMESPACE',
  shutdownTimeout: 'KMM_PREFLIGHT_SHUTDOWN_TIMEOUT',
  logLevel: 'LOG_LEVEL',
  kanikoImage: 'KMM_PREFLIGHT_KANIKO_IMAGE',
  signerImage: 'KMM_PREFLIGHT_SIGNER_IMAGE',
  signFilePath: 'KMM_PREFLIGHT_SIGN_FILE_PATH',
  jobBackoffLimit: 'KMM_PREFLIGHT_JOB_BACKOFF_LIMIT',
  jobActiveDeadline: 'KMM_PREFLIGHT_JOB_ACTIVE_DEADLINE',
  jobTtlAfterFinished: 'KMM_PREFLIGHT_JOB_TTL_AFTER_FINISHED',
  jobServiceAccount: 'KMM_PREFLIGHT_JOB_SERVICE_ACCOUNT',
} as const satisfies Partial<Record<keyof RunnerFlags, string>>;

export const DEFAULT_PULL_SECRET = 'openshift-config/pull-secret';

export function runnerConfig(flags: RunnerFlags, env: NodeJS.ProcessEnv): RunnerConfig {
  const pick = (key: keyof typeof RunnerEnv): string | undefined => {
    const flag = flags[key];
    if (typeof flag === 'string') return flag;
    const value = env[RunnerEnv[key]];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const list = (key: 'caFile' | 'mirror' | 'insecureRegistry'): string[] => {
    const flag = flags[key];
    if (flag !== undefined && flag.length > 0) return [...flag];
    return splitList(env[RunnerEnv[key]]);
  };
  const bool = (key: 'clusterMirrors' | 'leaderElect', fallback: boolean): boolean => {
    const flag = flags[key];
    if (typeof flag === 'boolean') return flag;
    const value = env[RunnerEnv[key]]?.trim().toLowerCase();
    if (value === undefined || value === '') return fallback;
    if (['true', '1', 'yes'].includes(value)) return true;
    if (['false', '0', 'no'].includes(value)) return false;
    throw new UsageError(`${RunnerEnv[key]}: expected true or false, got '${value}'`);
  };
  const duration = (key: keyof typeof RunnerEnv, flag: string, fallback: string): number =>
    parseDuration(pick(key) ?? fallback, `--${flag} (${RunnerEnv[key]})`);

  const logLevel = (pick('logLevel') ?? 'info') as LevelWithSilent;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(
      `--log-level (LOG_LEVEL): expected one of ${LOG_LEVELS.join(', ')}, got '${logLevel}'`,
    );
  }
  const leaseDurationMs = duration('leaseDuration', 'lease-duration', '15s');
  const renewDeadlineMs = duration('renewDeadline', 'renew-deadline', '10s');
  const retryPeriodMs = duration('retryPeriod', 'retry-period', '2s');
  if (!(retryPeriodMs < renewDeadlineMs && renewDeadlineMs < leaseDurationMs)) {
    throw new UsageError(
      '--retry-period < --renew-deadline < --lease-duration must hold (defaults 2s < 10s < 15s), so a leader renews before it gives up and before others take over',
    );
  }
  const leaderNamespace = pick('leaderElectionNamespace') ?? env['POD_NAMESPACE'];
  const identity = env['POD_NAME'];
  const pullSecretText = flags.pullSecret ?? env[RunnerEnv.pullSecret] ?? DEFAULT_PULL_SECRET;
  const kubeconfig = flags.kubeconfig;
  const resourceSelector = pick('resourceSelector');
  if (resourceSelector !== undefined && !/^[A-Za-z0-9._/=,!() -]+$/.test(resourceSelector)) {
    throw new UsageError(
      `--resource-selector (KMM_PREFLIGHT_RESOURCE_SELECTOR): '${resourceSelector}' is not a label selector; e.g. team=a or shard in (1,2)`,
    );
  }
  return {
    ...(kubeconfig === undefined ? {} : { kubeconfig }),
    concurrency: integer(pick('concurrency') ?? '16', '--concurrency (KMM_PREFLIGHT_CONCURRENCY)', 1, 1024),
    retryIntervalMs: duration('retryInterval', 'retry-interval', '3m'),
    ...(resourceSelector === undefined ? {} : { resourceSelector }),
    namespaces: splitList(pick('namespaces')).map((ns) =>
      dnsLabel(ns, '--namespaces (KMM_PREFLIGHT_NAMESPACES)'),
    ),
    architecture: architecture(pick('arch') ?? 'amd64'),
    ...parsePullSecret(pullSecretText),
    caFiles: list('caFile'),
    mirrors: list('mirror'),
    clusterMirrors: bool('clusterMirrors', true),
    insecureRegistries: list('insecureRegistry'),
    leaderElection: {
      enabled: bool('leaderElect', false),
      ...(leaderNamespace === undefined ? {} : { namespace: leaderNamespace }),
      leaseName: pick('leaderElectionId') ?? 'kmm-preflight-runner',
      ...(identity === undefined ? {} : { identity }),
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      renewDeadlineMs,
      retryPeriodMs,
    },
    opsAddress: parseAddress(pick('opsAddress') ?? '0.0.0.0:8081'),
    validationTimeoutMs: duration('validationTimeout', 'validation-timeout', '10m'),
    statusBatchDelayMs: duration('statusBatchDelay', 'status-batch-delay', '1s'),
    relistIntervalMs: duration('relistInterval', 'relist-interval', '5m'),
    watchIdleTimeoutMs: duration('watchIdleTimeout', 'watch-idle-timeout', '2m'),
    eventsNamespace: pick('eventsNamespace') ?? 'default',
    shutdownTimeoutMs: duration('shutdownTimeout', 'shutdown-timeout', '10s'),
    logLevel,
    buildSign: buildSignFromFlags(pick),
  };
}

/** The flag behind each BuildSignConfig field, for usage errors. */
const BUILD_SIGN_FLAGS: Readonly<Record<keyof BuildSignConfig, keyof typeof RunnerEnv>> = {
  kanikoImage: 'kanikoImage',
  signerImage: 'signerImage',
  signFilePath: 'signFilePath',
  backoffLimit: 'jobBackoffLimit',
  activeDeadlineSeconds: 'jobActiveDeadline',
  ttlSecondsAfterFinished: 'jobTtlAfterFinished',
  serviceAccountName: 'jobServiceAccount',
};

function flagName(key: keyof typeof RunnerEnv): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} (${RunnerEnv[key]})`;
}

/** Build/Sign Job settings from flags and environment, checked by buildSignConfig; a bad one names its flag. */
function buildSignFromFlags(pick: (key: keyof typeof RunnerEnv) => string | undefined): BuildSignConfig {
  const seconds = (key: 'jobActiveDeadline' | 'jobTtlAfterFinished'): number | undefined => {
    const text = pick(key);
    return text === undefined ? undefined : Math.round(parseDuration(text, flagName(key)) / 1000);
  };
  const backoffText = pick('jobBackoffLimit');
  const ttlText = pick('jobTtlAfterFinished');
  const overrides: Partial<Record<keyof BuildSignConfig, string | number | undefined>> = {
    kanikoImage: pick('kanikoImage'),
    signerImage: pick('signerImage'),
    signFilePath: pick('signFilePath'),
    backoffLimit: backoffText === undefined ? undefined : Number(backoffText),
    activeDeadlineSeconds: seconds('jobActiveDeadline'),
    // `never`: finished Jobs stay until their PreflightValidationOCP is deleted.
    ttlSecondsAfterFinished: ttlText === 'never' ? undefined : seconds('jobTtlAfterFinished'),
    serviceAccountName: pick('jobServiceAccount'),
  };
  const given = Object.fromEntries(
    Object.entries(overrides).filter(
      ([key, value]) => value !== undefined || (key === 'ttlSecondsAfterFinished' && ttlText === 'never'),
    ),
  ) as Partial<BuildSignConfig>;
  try {
    return buildSignConfig(given);
  } catch (err) {
    if (err instanceof BuildSignConfigError) {
      throw new UsageError(`${flagName(BUILD_SIGN_FLAGS[err.field])}: ${err.message}`);
    }
    throw err;
  }
}

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `1500ms`, `30s`, `3m`, `1h`, or a combination (`1m30s`), as Go durations are written. */
export function parseDuration(text: string, what: string): number {
  const trimmed = text.trim();
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (trimmed === '' || parts.map((p) => p[0]).join('') !== trimmed) {
    throw new UsageError(`${what}: '${text}' is not a duration; write e.g. 30s, 3m, 1m30s or 500ms`);
  }
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * (UNITS[p[2] ?? 's'] ?? 1), 0);
  if (ms <= 0) throw new UsageError(`${what}: must be more than zero`);
  return Math.round(ms);
}

function integer(text: string, what: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`${what}: expected an integer from ${min} to ${max}, got '${text}'`);
  }
  return value;
}

function splitList(text: string | undefined): string[] {
  return (text ?? '')
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function dnsLabel(value: string, what: string): string {
  if (!DNS_LABEL.test(value)) throw new UsageError(`${what}: '${value}' is not a namespace name`);
  return value;
}

/** The Go name (x86_64 → amd64), as image indexes and the module check compare it. */
function architecture(value: string): string {
  const target = parseTargetPlatform(value);
  if (!target.ok) throw new UsageError(`--arch (KMM_PREFLIGHT_ARCH): ${target.message}`);
  if (target.platform.variant !== undefined) {
    throw new UsageError(`--arch (KMM_PREFLIGHT_ARCH): '${value}': give the architecture without a variant`);
  }
  return target.platform.architecture;
}

function parsePullSecret(text: string): { pullSecret?: { namespace: string; name: string } } {
  if (text.trim() === '') return {};
  const [namespace, name, extra] = text.trim().split('/');
  if (
    namespace === undefined ||
    name === undefined ||
    extra !== undefined ||
    namespace === '' ||
    name === ''
  ) {
    throw new UsageError(
      `--pull-secret (KMM_PREFLIGHT_PULL_SECRET): expected namespace/name, got '${text}' (give '' for none)`,
    );
  }
  return { pullSecret: { namespace: dnsLabel(namespace, '--pull-secret namespace'), name } };
}

function parseAddress(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  const host = colon < 0 ? '' : text.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(colon < 0 ? text : text.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--ops-address (KMM_PREFLIGHT_OPS_ADDRESS): expected host:port, got '${text}'`);
  }
  return { host: host === '' ? '0.0.0.0' : host, port };
}
