import { Option } from 'commander';
import { createLogger, LOG_LEVELS } from '../../platform/logger.ts';
import { FailureModes, type FailureMode } from '../../../webhook/admission-decider.ts';
import { ModulePolicies, type ModulePolicy } from '../../../webhook/module-rules.ts';
import { CertificateLoadError } from '../../../webhook/serving-certificate.ts';
import { ExitCode, UsageError, type CliIo } from '../io.ts';
import type { CommandRegistration } from '../commands.ts';
import type { LevelWithSilent } from 'pino';

interface WebhookFlags {
  tlsCertFile: string;
  tlsKeyFile: string;
  bindAddress: string;
  port: number;
  healthPort: number;
  kubeconfig?: string;
  modulePolicy: ModulePolicy;
  failureMode: FailureMode;
  activeWindowHours: number;
  shutdownDelaySeconds: number;
  logLevel: LevelWithSilent;
}

/** `kmm-preflight webhook`: the validating admission webhook, until SIGTERM or SIGINT. */
export const registerWebhookCommand: CommandRegistration = (program, io, setExitCode) => {
  program
    .command('webhook')
    .description(
      'Run the validating admission webhook for PreflightValidationOCP and Module (HTTPS), with /healthz, /readyz and /metrics on a plain-HTTP port.',
    )
    .requiredOption('--tls-cert-file <file>', 'serving certificate (PEM); reloaded when it changes on disk')
    .requiredOption('--tls-key-file <file>', 'private key of the serving certificate (PEM)')
    .option('--bind-address <address>', 'address to listen on (both ports)', '0.0.0.0')
    .option('--port <port>', 'HTTPS admission port (0 = any free port)', parsePort, 9443)
    .option('--health-port <port>', 'plain-HTTP port for /healthz, /readyz, /metrics', parsePort, 8081)
    .option('--kubeconfig <file>', 'kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)')
    .addOption(
      new Option('--module-policy <policy>', 'a Module change that breaks an active preflight: deny or warn')
        .choices(ModulePolicies)
        .default('deny'),
    )
    .addOption(
      new Option('--failure-mode <mode>', 'answer when a review cannot be evaluated: deny or allow')
        .choices(FailureModes)
        .default('deny'),
    )
    .option(
      '--active-window-hours <hours>',
      'a PreflightValidationOCP created this recently protects Modules even when complete (0 = status only)',
      parseHours,
      24,
    )
    .option(
      '--shutdown-delay-seconds <seconds>',
      'on SIGTERM, fail /readyz this long before closing',
      parseHours,
      3,
    )
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
    .action(async (flags: WebhookFlags) => {
      setExitCode(await runWebhookCommand(flags, io));
    });
};

async function runWebhookCommand(flags: WebhookFlags, io: CliIo): Promise<number> {
  // Loaded on use, as the runner is: the Kubernetes client and express are for this command only.
  const [{ createKubeClient, loadKubeConfig }, { KubeAdmissionCache }, { startWebhook }] = await Promise.all([
    import('../../platform/kube/client.ts'),
    import('../../../webhook/kube-cache.ts'),
    import('../../../webhook/run.ts'),
  ]);
  const logger = createLogger({
    level: flags.logLevel,
    base: { component: 'webhook' },
    destination: io.stdout,
  });
  let client;
  try {
    client = createKubeClient(loadKubeConfig(flags.kubeconfig, io.env));
  } catch (err) {
    throw new UsageError(`cannot load the Kubernetes configuration: ${(err as Error).message}`);
  }
  const cache = new KubeAdmissionCache({ client, logger });
  let running;
  try {
    running = await startWebhook(
      {
        certFile: flags.tlsCertFile,
        keyFile: flags.tlsKeyFile,
        bindAddress: flags.bindAddress,
        port: flags.port,
        healthPort: flags.healthPort,
        shutdownDelayMs: flags.shutdownDelaySeconds * 1000,
        policy: {
          modulePolicy: flags.modulePolicy,
          failureMode: flags.failureMode,
          activeWindowMs: flags.activeWindowHours * 3_600_000,
        },
      },
      cache,
      logger,
    );
  } catch (err) {
    if (err instanceof CertificateLoadError) throw new UsageError(err.message);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL' || code === 'EACCES') {
      io.stderr.write(`kmm-preflight webhook: cannot listen: ${(err as Error).message}\n`);
      return ExitCode.NotVerified;
    }
    throw err;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'shutting down');
  await running.shutdown();
  return ExitCode.Ok;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new UsageError(`"${value}" is not a port number (0-65535)`);
  return port;
}

function parseHours(value: string): number {
  const hours = Number(value);
  if (value.trim() === '' || !Number.isFinite(hours) || hours < 0) {
    throw new UsageError(`"${value}" is not a non-negative number`);
  }
  return hours;
}
