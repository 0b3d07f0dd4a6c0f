import { Option, type Command } from 'commander';

import type { CommandRegistration } from '../commands.ts';
import { ExitCode, UsageError, type CliIo } from '../io.ts';
import {
  addRegistryFlags,
  collect,
  registryAccessFromFlags,
  type RegistryFlagValues,
} from '../registry-flags.ts';
import { MirrorRuleError, parseMirrorFlag, type MirrorRule } from '../../image/mirrors.ts';
import { createImageSource } from '../../image/sources.ts';
import { ReleaseError } from '../../release/errors.ts';
import { resolveRelease, type ResolvedRelease } from '../../release/resolve.ts';

interface ReleaseFlags extends RegistryFlagValues {
  readonly rt?: boolean;
  readonly mirror: readonly string[];
  readonly output: 'text' | 'json';
}

/** `kmm-preflight release <release-image>`: which kernel will this OpenShift release run? */
export const registerReleaseCommand: CommandRegistration = (program, io, setExitCode) => {
  const command: Command = program
    .command('release')
    .description(
      'Resolve an OpenShift release image to the kernel its nodes will run (release payload → driver-toolkit → kernel).',
    )
    .argument(
      '<release-image>',
      'the release image, e.g. quay.io/openshift-release-dev/ocp-release:4.19.0-x86_64',
    )
    .option('--rt', 'target the real-time kernel (useRTKernel)')
    .option(
      '--mirror <SOURCE=MIRROR>',
      'pull images under SOURCE from MIRROR first; repeatable, tried in order',
      collect,
      [],
    );
  addRegistryFlags(command).addOption(
    new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'),
  );
  command.action(async (releaseImage: string, flags: ReleaseFlags) => {
    setExitCode(await runRelease(releaseImage, flags, io));
  });
};

async function runRelease(releaseImage: string, flags: ReleaseFlags, io: CliIo): Promise<number> {
  const mirrors: MirrorRule[] = [];
  for (const flag of flags.mirror) {
    try {
      mirrors.push(parseMirrorFlag(flag));
    } catch (err) {
      if (err instanceof MirrorRuleError) throw new UsageError(err.message);
      throw err;
    }
  }
  const access = await registryAccessFromFlags(flags, io.env);
  const source = createImageSource({
    caCertificates: access.caCertificates,
    credentials: access.credentials,
  });
  try {
    const resolved = await resolveRelease(
      { source },
      {
        releaseImage,
        useRTKernel: flags.rt === true,
        platform: access.platform,
        tls: access.tls,
        credentials: access.credentials,
        mirrors,
      },
    );
    io.stdout.write(flags.output === 'json' ? `${JSON.stringify(jsonOf(resolved))}\n` : textOf(resolved));
    return ExitCode.Ok;
  } catch (err) {
    if (!(err instanceof ReleaseError)) throw err;
    if (flags.output === 'json') {
      io.stdout.write(`${JSON.stringify({ releaseImage, error: err.message })}\n`);
    } else {
      io.stderr.write(
        `kmm-preflight: release ${releaseImage} not resolved (${err.reason}): ${err.message}\n`,
      );
    }
    return ExitCode.NotVerified;
  } finally {
    await source.close();
  }
}

function jsonOf(r: ResolvedRelease): Record<string, string | null> {
  return {
    releaseImage: r.releaseImage,
    digest: r.digest,
    version: r.version,
    kernelVersion: r.kernelVersion,
    rtKernelVersion: r.rtKernelVersion,
    rhelVersion: r.rhelVersion,
    dtkImage: r.dtkImage,
    architecture: r.architecture,
  };
}

function textOf(r: ResolvedRelease): string {
  const rows: [string, string][] = [
    ['Release', r.releaseImage],
    ['Digest', r.digest],
    ['Version', r.version ?? '(not stated by the payload)'],
    ['Architecture', r.architecture],
    ['Kernel', r.kernelVersion],
    ['RT kernel', r.rtKernelVersion ?? '(none)'],
    ['RHEL', r.rhelVersion],
    ['Driver toolkit', r.dtkImage],
    ['Target kernel', `${r.targetKernel}${r.useRTKernel ? ' (real-time)' : ''}`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}\n`).join('');
}
