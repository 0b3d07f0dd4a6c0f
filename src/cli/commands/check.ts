import { Option, type Command } from 'commander';

import type { CommandRegistration } from '../commands.ts';
import { ExitCode, UsageError, type CliIo } from '../io.ts';
import {
  addRegistryFlags,
  collect,
  inTreeModuleLists,
  registryAccessFromFlags,
  type RegistryFlagValues,
} from '../registry-flags.ts';
import {
  inputProblemSource,
  loadManifests,
  ManifestPathError,
  type InputProblem,
  type ManifestDocument,
} from '../../check/manifests.ts';
import { offlineBuildSignStage } from '../../check/offline-build-sign.ts';
import { ProgressLine } from '../../check/progress.ts';
import { OutputFormats, renderReport, type OutputFormat } from '../../check/report.ts';
import { runCheck } from '../../check/run.ts';
import { MirrorRuleError, parseMirrorFlag, withMirrors, type MirrorRule } from '../../image/mirrors.ts';
import { createImageSource } from '../../image/sources.ts';
import { ImageStageCache } from '../../image/stage/cache.ts';
import { parseKernelVersion } from '../../kernel/version.ts';
import { createPreflightDeps } from '../../preflight/deps.ts';
import type { KernelState } from '../../preflight/status.ts';
import { ReleaseError } from '../../release/errors.ts';
import { resolveRelease } from '../../release/resolve.ts';

interface CheckFlags extends RegistryFlagValues {
  readonly releaseImage?: string;
  readonly kernel?: string;
  readonly filename: readonly string[];
  readonly kubeconfig?: string;
  readonly namespace?: string;
  readonly pushBuiltImage?: boolean;
  readonly rt?: boolean;
  readonly mirror: readonly string[];
  readonly output: OutputFormat;
  readonly concurrency: string;
}

/**
 * `kmm-preflight check`: the preflight engine without a cluster — Module manifests from files (or read from a
 * cluster), against a release image or a kernel, with images in registries or OCI layout directories. Prints the
 * status a PreflightValidationOCP would show; exit 0 when every Module is verified, 1 when any is not, 2 when there
 * is no verdict: bad usage, input that could not be read (reported with the Modules that could), no kernel.
 */
export const registerCheckCommand: CommandRegistration = (program, io, setExitCode) => {
  const command: Command = program
    .command('check')
    .description(
      "Validate Module manifests (or a cluster's Modules, read only) against a release image or a kernel, without a cluster.",
    )
    .option('--release-image <image>', 'the OpenShift release image to validate against')
    .option(
      '--kernel <version>',
      'validate against this kernel instead of a release, e.g. 5.14.0-284.el9.x86_64',
    )
    .option(
      '-f, --filename <path>',
      'a Module manifest file or directory (YAML/JSON); repeatable',
      collect,
      [],
    )
    .option('--kubeconfig <file>', 'read the Modules from this cluster instead of files (read only)')
    .option(
      '-n, --namespace <ns>',
      'with --kubeconfig: only this namespace; with files: for Modules without one',
    )
    .option('--push-built-image', 'as spec.pushBuiltImage: builds and signs would push their images')
    .option('--rt', "validate against the release's real-time kernel (useRTKernel)")
    .option(
      '--mirror <SOURCE=MIRROR>',
      'pull images under SOURCE from MIRROR first; repeatable, tried in order',
      collect,
      [],
    )
    .option('--concurrency <n>', 'Modules validated at once', '8');
  addRegistryFlags(command).addOption(
    new Option('-o, --output <format>', 'output format').choices(OutputFormats).default('table'),
  );
  command.action(async (flags: CheckFlags) => {
    setExitCode(await runCheckCommand(flags, io));
  });
};

async function runCheckCommand(flags: CheckFlags, io: CliIo): Promise<number> {
  if ((flags.releaseImage === undefined) === (flags.kernel === undefined)) {
    throw new UsageError('give exactly one of --release-image <image> or --kernel <version>');
  }
  if (flags.rt === true && flags.kernel !== undefined) {
    throw new UsageError(
      '--rt selects the real-time kernel of a release: use it with --release-image, not --kernel',
    );
  }
  if ((flags.filename.length === 0) === (flags.kubeconfig === undefined)) {
    throw new UsageError(
      'give the Modules with -f <file or directory> (repeatable), or --kubeconfig <file> to read them from a cluster',
    );
  }
  if (flags.kernel !== undefined) {
    const parsed = parseKernelVersion(flags.kernel);
    if (!parsed.ok) throw new UsageError(`--kernel: ${parsed.error.message}`);
  }
  const concurrency = Number(flags.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
    throw new UsageError(`--concurrency '${flags.concurrency}': expected a whole number from 1 to 256`);
  }
  const mirrors = parseMirrors(flags.mirror);
  const access = await registryAccessFromFlags(flags, io.env);

  const { documents, notes, errors } = await readModules(flags, io);
  const inputErrors: InputProblem[] = [...errors];
  if (flags.kubeconfig === undefined && documents.length === 0) {
    // A mistyped GitOps path must not pass as "nothing to check".
    const paths = flags.filename.join(', ');
    inputErrors.push({ file: paths, message: `no Module found in ${paths}` });
  }
  for (const note of notes) io.stderr.write(`note: ${note}\n`);
  for (const problem of inputErrors) {
    io.stderr.write(`error: ${inputProblemSource(problem)}: ${problem.message}\n`);
  }

  const registry = createImageSource({
    caCertificates: access.caCertificates,
    credentials: access.credentials,
  });
  const source = mirrors.length > 0 ? withMirrors(registry, mirrors) : registry;
  const progress = new ProgressLine(io.stderr);
  try {
    // `source` already pulls through the mirrors, for the release's images and the Modules' alike.
    const kernel = await targetKernel(flags, { source, access });
    if (kernel.state === 'failed')
      io.stderr.write(`kmm-preflight: release not resolved: ${kernel.message}\n`);
    const inTreeModules = inTreeModuleLists(source, access);
    const preflight = createPreflightDeps({
      image: { source, cache: new ImageStageCache() },
      credentials: () => Promise.resolve(access.credentials),
      inTreeModules: (request) => inTreeModules.source(request),
      buildSign: offlineBuildSignStage(
        kernel.state === 'resolved' && kernel.dtkImage !== undefined
          ? { driverToolkitImage: kernel.dtkImage }
          : {},
      ),
    });
    const result = await runCheck(
      { preflight, now: () => new Date(), onProgress: (p) => progress.update(p) },
      {
        documents,
        kernel,
        pushBuiltImage: flags.pushBuiltImage === true,
        platform: access.platform,
        concurrency,
        defaultNamespace: flags.namespace ?? 'default',
      },
    );
    progress.clear();
    for (const note of result.notes) io.stderr.write(`note: ${note}\n`);
    io.stdout.write(
      renderReport({ status: result.status, inputErrors }, flags.output, {
        color: io.stdout.isTTY === true && io.env['NO_COLOR'] === undefined,
        ...(flags.releaseImage === undefined ? {} : { releaseImage: flags.releaseImage }),
      }),
    );
    // No verdict over input that was not all read, or without a kernel: neither "verified" nor "not verified".
    if (inputErrors.length > 0) return ExitCode.Usage;
    if (kernel.state !== 'resolved') return ExitCode.Failed;
    const allVerified = (result.status.modules ?? []).every((m) => m.verificationStatus === 'True');
    return allVerified ? ExitCode.Ok : ExitCode.NotVerified;
  } finally {
    progress.clear();
    await registry.close();
  }
}

async function readModules(
  flags: CheckFlags,
  io: CliIo,
): Promise<{
  documents: readonly ManifestDocument[];
  notes: readonly string[];
  errors: readonly InputProblem[];
}> {
  if (flags.kubeconfig !== undefined) {
    // Loaded on use: reading a cluster's Modules brings the Kubernetes client, which checking files never needs.
    const { listClusterModules } = await import('../cluster-modules.ts');
    return {
      documents: await listClusterModules(flags.kubeconfig, io.env, flags.namespace),
      notes: [],
      errors: [],
    };
  }
  try {
    const loaded = await loadManifests(flags.filename);
    return { documents: loaded.modules, notes: loaded.notes, errors: loaded.errors };
  } catch (err) {
    if (err instanceof ManifestPathError) throw new UsageError(err.message);
    throw err;
  }
}

async function targetKernel(
  flags: CheckFlags,
  deps: {
    source: Parameters<typeof resolveRelease>[0]['source'];
    access: Awaited<ReturnType<typeof registryAccessFromFlags>>;
  },
): Promise<KernelState> {
  if (flags.kernel !== undefined) {
    const kernel = flags.kernel.trim();
    return {
      state: 'resolved',
      targetKernel: kernel,
      kernelVersion: kernel,
      givenBy: '--kernel on the command line',
    };
  }
  try {
    const release = await resolveRelease(
      { source: deps.source },
      {
        releaseImage: flags.releaseImage ?? '',
        useRTKernel: flags.rt === true,
        platform: deps.access.platform,
        tls: deps.access.tls,
        credentials: deps.access.credentials,
      },
    );
    return {
      state: 'resolved',
      targetKernel: release.targetKernel,
      kernelVersion: release.kernelVersion,
      ...(release.rtKernelVersion === null ? {} : { rtKernelVersion: release.rtKernelVersion }),
      dtkImage: release.dtkImage,
      ...(release.version === null ? {} : { releaseVersion: release.version }),
      releaseDigest: release.digest,
    };
  } catch (err) {
    if (!(err instanceof ReleaseError)) throw err;
    return { state: 'failed', reason: err.reason, message: err.message, retrying: false };
  }
}

function parseMirrors(flags: readonly string[]): MirrorRule[] {
  return flags.map((flag) => {
    try {
      return parseMirrorFlag(flag);
    } catch (err) {
      if (err instanceof MirrorRuleError) throw new UsageError(err.message);
      throw err;
    }
  });
}
