import { Option, type Command } from 'commander';

import type { CommandRegistration } from '../commands.ts';
import { ExitCode, UsageError, type CliIo } from '../io.ts';
import {
  addRegistryFlags,
  inTreeModuleLists,
  registryAccessFromFlags,
  type RegistryFlagValues,
} from '../registry-flags.ts';
import { parseImageReference } from '../../image/reference.ts';
import { createImageSource } from '../../image/sources.ts';
import type { DependencyFindings, ImageVerdict } from '../../image/stage/types.ts';
import { verifyModuleImage } from '../../image/stage/verify.ts';
import { parseKernelVersion } from '../../kernel/version.ts';

interface ImageFlags extends RegistryFlagValues {
  readonly kernel: string;
  readonly module: string;
  readonly dirName: string;
  readonly modulesLoadingOrder?: string;
  readonly firmwarePath?: string;
  readonly requireSignature?: boolean;
  readonly driverToolkit?: string;
  readonly output: 'text' | 'json';
}

/** `kmm-preflight image <image-ref>`: will this module image load its module on nodes running this kernel? */
export const registerImageCommand: CommandRegistration = (program, io, setExitCode) => {
  const command: Command = program
    .command('image')
    .description(
      'Check a kernel module image for a kernel: the module is where `modprobe -d <dir-name>` looks, is an ELF ' +
        'module built for that kernel (vermagic), is indexed by depmod, and has its dependencies.',
    )
    .argument('<image-ref>', 'the module image (registry reference, or oci:<dir>[:<tag>] for an OCI layout)')
    .requiredOption(
      '--kernel <kernel>',
      'target kernel release, as `uname -r` prints it on the upgraded nodes',
    )
    .requiredOption('--module <name>', "the Module's modprobe.moduleName")
    .option('--dir-name <dir>', "the Module's modprobe.dirName (modprobe -d)", '/opt')
    .option(
      '--modules-loading-order <names>',
      'modprobe.modulesLoadingOrder, comma-separated; each is checked',
    )
    .option('--firmware-path <dir>', 'modprobe.firmwarePath: the image must hold firmware there')
    .option('--require-signature', 'a sign section applies for this kernel: the module must be signed')
    .option(
      '--driver-toolkit <image>',
      "the release's driver-toolkit image (`kmm-preflight release` prints it): dependencies the module image " +
        'lacks must be in-tree modules of the kernel it ships; without it they are assumed in-tree',
    );
  addRegistryFlags(command).addOption(
    new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'),
  );
  command.action(async (reference: string, flags: ImageFlags) => {
    setExitCode(await runImage(reference, flags, io));
  });
};

async function runImage(reference: string, flags: ImageFlags, io: CliIo): Promise<number> {
  const kernel = parseKernelVersion(flags.kernel);
  if (!kernel.ok) throw new UsageError(`--kernel: ${kernel.error.message}`);
  if (flags.module.trim() === '') throw new UsageError('--module: the module name is empty');
  const parsedReference = parseImageReference(reference);
  if (!parsedReference.ok) throw new UsageError(parsedReference.error.message);
  if (flags.driverToolkit !== undefined) {
    const parsedDtk = parseImageReference(flags.driverToolkit);
    if (!parsedDtk.ok) throw new UsageError(`--driver-toolkit: ${parsedDtk.error.message}`);
  }
  const loadingOrder = flags.modulesLoadingOrder
    ?.split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  const access = await registryAccessFromFlags(flags, io.env);
  const source = createImageSource({
    caCertificates: access.caCertificates,
    credentials: access.credentials,
  });
  const inTreeModules =
    flags.driverToolkit === undefined
      ? undefined
      : inTreeModuleLists(source, access).source({
          driverToolkitImage: flags.driverToolkit,
          kernel: kernel.data.raw,
          platform: access.platform,
        });
  let verdict: ImageVerdict;
  try {
    verdict = await verifyModuleImage(
      { source },
      {
        reference,
        kernel: kernel.data.raw,
        modprobe: {
          moduleName: flags.module,
          dirName: flags.dirName,
          ...(loadingOrder?.length ? { modulesLoadingOrder: loadingOrder } : {}),
          ...(flags.firmwarePath === undefined ? {} : { firmwarePath: flags.firmwarePath }),
        },
        requireSignature: flags.requireSignature === true,
        platform: access.platform,
        tls: access.tls,
        credentials: access.credentials,
        ...(inTreeModules === undefined ? {} : { inTreeModules }),
      },
    );
  } finally {
    await source.close();
  }
  io.stdout.write(
    flags.output === 'json'
      ? `${JSON.stringify(jsonOf(verdict, flags.module))}\n`
      : textOf(verdict, flags.module),
  );
  if (verdict.errorCode === 'INVALID_REFERENCE') return ExitCode.Usage;
  return verdict.verified ? ExitCode.Ok : ExitCode.NotVerified;
}

/** The documented JSON shape: issue 3's keys plus depmod and dependencies; unknown values are null. */
function jsonOf(v: ImageVerdict, module: string): Record<string, unknown> {
  return {
    image: v.image,
    digest: v.digest,
    kernel: v.kernel,
    module,
    verified: v.verified,
    reason: v.reason,
    path: v.path,
    vermagic: v.vermagic,
    signed: v.signed,
    depmod: v.depmod,
    dependencies: v.dependencies,
  };
}

function textOf(v: ImageVerdict, module: string): string {
  const yesNo = (value: boolean | null): string => (value === null ? '(unknown)' : value ? 'yes' : 'no');
  const rows: [string, string][] = [
    ['Image', v.image],
    ['Digest', v.digest ?? '(not resolved)'],
    ['Kernel', v.kernel],
    ['Module', module],
    ['Verified', v.verified ? 'yes' : v.definite ? 'no' : 'no (transient: retry later)'],
    ['Path', v.path ?? '(not found)'],
    ['Vermagic', v.vermagic?.trim() ?? '(unknown)'],
    ['Signed', v.signed && v.modules[0]?.signer ? `yes (${v.modules[0].signer})` : yesNo(v.signed)],
    ['depmod index', yesNo(v.depmod)],
    ['Dependencies', v.dependencies === null ? '(unknown)' : dependencyText(v.dependencies)],
    ['Reason', v.reason],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}\n`).join('');
}

function dependencyText(d: DependencyFindings): string {
  const list = (names: readonly string[]): string => names.join(', ') || '-';
  const parts = [`found: ${list(d.found)}`, `in-tree: ${list(d.inTree)}`, `missing: ${list(d.missing)}`];
  if (d.assumedInTree.length > 0) parts.push(`assumed in-tree (unverified): ${list(d.assumedInTree)}`);
  return parts.join('; ');
}
