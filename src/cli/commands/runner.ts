import { Option } from 'commander';
import { DEFAULT_BUILD_SIGN_CONFIG } from '../../buildsign/config.ts';
import { createLogger, LOG_LEVELS } from '../../platform/logger.ts';
import { DEFAULT_PULL_SECRET, RunnerEnv, runnerConfig, type RunnerFlags } from '../../runner/config.ts';
import { ExitCode, UsageError, type CliIo } from '../io.ts';
import type { CommandRegistration } from '../commands.ts';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
const env = (name: string): string => `(env ${name})`;

/** `kmm-preflight runner`: the in-cluster controller, until SIGTERM or SIGINT. */
export const registerRunnerCommand: CommandRegistration = (program, io, setExitCode) => {
  program
    .command('runner')
    .description(
      'Run the preflight controller: validate every Module against each PreflightValidationOCP and report on its status. Every flag falls back to the environment variable named in its help.',
    )
    .option('--kubeconfig <file>', 'kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)')
    .option(
      '--concurrency <n>',
      `module validations at once, over all resources; default 16 ${env(RunnerEnv.concurrency)}`,
    )
    .option(
      '--retry-interval <duration>',
      `failed modules are validated again after this long; default 3m ${env(RunnerEnv.retryInterval)}`,
    )
    .option(
      '--namespaces <list>',
      `comma-separated namespaces to watch; default all ${env(RunnerEnv.namespaces)}`,
    )
    .option(
      '--resource-selector <labels>',
      `serve only PreflightValidationOCPs with these labels (sharding, shared test clusters); default all ${env(RunnerEnv.resourceSelector)}`,
    )
    .option('--arch <arch>', `target nodes' architecture; default amd64 ${env(RunnerEnv.arch)}`)
    .option(
      '--pull-secret <namespace/name>',
      `cluster pull secret (missing is fine; '' for none); default ${DEFAULT_PULL_SECRET} ${env(RunnerEnv.pullSecret)}`,
    )
    .option(
      '--ca-file <file>',
      `extra CA bundle for registries, repeatable ${env(RunnerEnv.caFile)}`,
      collect,
    )
    .option('--mirror <SOURCE=MIRROR>', `registry mirror rule, repeatable ${env(RunnerEnv.mirror)}`, collect)
    .option(
      '--no-cluster-mirrors',
      `do not read ImageDigestMirrorSet/ImageTagMirrorSet/ImageContentSourcePolicy ${env(RunnerEnv.clusterMirrors)}`,
    )
    .option(
      '--insecure-registry <host:port>',
      `registry reachable over plain HTTP, repeatable ${env(RunnerEnv.insecureRegistry)}`,
      collect,
    )
    .option('--leader-elect', `run for leadership on a Lease; default off ${env(RunnerEnv.leaderElect)}`)
    .option(
      '--leader-election-namespace <ns>',
      `namespace of the Lease; default the pod's ${env(RunnerEnv.leaderElectionNamespace)}`,
    )
    .option(
      '--leader-election-id <name>',
      `Lease name; default kmm-preflight-runner ${env(RunnerEnv.leaderElectionId)}`,
    )
    .option('--lease-duration <duration>', `default 15s ${env(RunnerEnv.leaseDuration)}`)
    .option('--renew-deadline <duration>', `default 10s ${env(RunnerEnv.renewDeadline)}`)
    .option('--retry-period <duration>', `default 2s ${env(RunnerEnv.retryPeriod)}`)
    .option(
      '--ops-address <host:port>',
      `/healthz /readyz /metrics; default 0.0.0.0:8081 ${env(RunnerEnv.opsAddress)}`,
    )
    .option(
      '--validation-timeout <duration>',
      `one module's validation; default 10m ${env(RunnerEnv.validationTimeout)}`,
    )
    .option(
      '--status-batch-delay <duration>',
      `results wait this long to share a status write; default 1s ${env(RunnerEnv.statusBatchDelay)}`,
    )
    .option(
      '--relist-interval <duration>',
      `full relist of watches; default 5m ${env(RunnerEnv.relistInterval)}`,
    )
    .option(
      '--watch-idle-timeout <duration>',
      `restart a silent watch; default 2m ${env(RunnerEnv.watchIdleTimeout)}`,
    )
    .option(
      '--events-namespace <ns>',
      `namespace of Events; default default ${env(RunnerEnv.eventsNamespace)}`,
    )
    .option(
      '--shutdown-timeout <duration>',
      `bound on the whole stop at SIGTERM (last status writes, Lease release), below the pod's grace period; default 10s ${env(RunnerEnv.shutdownTimeout)}`,
    )
    .option(
      '--kaniko-image <image>',
      `Kaniko executor of Build Jobs; default ${DEFAULT_BUILD_SIGN_CONFIG.kanikoImage} ${env(RunnerEnv.kanikoImage)}`,
    )
    .option(
      '--signer-image <image>',
      `image holding sign-file for Sign Jobs; default the release's driver-toolkit ${env(RunnerEnv.signerImage)}`,
    )
    .option(
      '--sign-file-path <path>',
      `sign-file in the signer image, \${KERNEL_VERSION} replaced; default ${DEFAULT_BUILD_SIGN_CONFIG.signFilePath} ${env(RunnerEnv.signFilePath)}`,
    )
    .option(
      '--job-backoff-limit <n>',
      `pod retries of a Build/Sign Job, 0-10; default ${DEFAULT_BUILD_SIGN_CONFIG.backoffLimit} ${env(RunnerEnv.jobBackoffLimit)}`,
    )
    .option(
      '--job-active-deadline <duration>',
      `a Build/Sign Job running longer fails; default 1h ${env(RunnerEnv.jobActiveDeadline)}`,
    )
    .option(
      '--job-ttl-after-finished <duration|never>',
      `finished Build/Sign Jobs are deleted after this long; default 24h ${env(RunnerEnv.jobTtlAfterFinished)}`,
    )
    .option(
      '--job-service-account <name>',
      `service account of Build/Sign Job pods; default the namespace's default ${env(RunnerEnv.jobServiceAccount)}`,
    )
    .addOption(
      new Option('--log-level <level>', `log level; default info ${env(RunnerEnv.logLevel)}`).choices(
        LOG_LEVELS,
      ),
    )
    .action(async (flags: RunnerFlags) => {
      setExitCode(await runRunnerCommand(flags, io));
    });
};

async function runRunnerCommand(flags: RunnerFlags, io: CliIo): Promise<number> {
  const config = runnerConfig(flags, io.env);
  // Loaded on use: the runner brings the Kubernetes client, ~90 MiB of RSS and a second of start-up that the
  // offline commands (image, release, check, certs) must not pay.
  const { startRunner } = await import('../../runner/runner.ts');
  const logger = createLogger({ level: config.logLevel, base: { component: 'runner' } });
  // Signals are taken from the start: a SIGTERM during start-up stops the runner as soon as it is up.
  let stop: (() => void) | undefined;
  let stopRequested = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'signal received');
    stopRequested = true;
    stop?.();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    let runner;
    try {
      runner = await startRunner(config, logger);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL' || code === 'EACCES') {
        io.stderr.write(`kmm-preflight runner: cannot listen on --ops-address: ${(err as Error).message}\n`);
        return ExitCode.Usage;
      }
      if (code === 'ENOENT' || (err instanceof Error && /kubeconfig|cluster configured/i.test(err.message))) {
        throw new UsageError(`cannot start: ${(err as Error).message}`);
      }
      throw err;
    }
    stop = () => runner.stop();
    if (stopRequested) runner.stop();
    return await runner.done;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
