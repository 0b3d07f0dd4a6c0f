import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';

import { UsageError } from './io.ts';
import type { RegistryCredentials } from '../image/registry/credentials.ts';
import { CredentialsError, authFileLookup, loadAuthFiles } from '../image/registry/credentials.ts';
import { parseTargetPlatform } from '../image/platform.ts';
import type { ImageSource, Platform, RegistryTLS } from '../image/source.ts';
import { InTreeModuleLists } from '../release/in-tree-modules.ts';

/**
 * The flags every command that reads images shares (`image`, `release`, `check`): target architecture, KMM's
 * registryTLS, extra CA bundles and an auth file. One definition, so they read and behave the same everywhere.
 */
export interface RegistryFlagValues {
  readonly arch: string;
  readonly insecure?: boolean;
  readonly insecureSkipTlsVerify?: boolean;
  readonly caFile?: readonly string[];
  readonly authFile?: string;
}

/** What the flags mean once files are read: ready for PullOptions and the registry client. */
export interface RegistryAccess {
  readonly platform: Platform;
  readonly tls: RegistryTLS;
  /** PEM bundles from --ca-file, in order. */
  readonly caCertificates: readonly string[];
  readonly credentials: RegistryCredentials;
}

export function addRegistryFlags(command: Command): Command {
  return command
    .option(
      '--arch <arch>',
      "the target nodes' architecture (amd64, arm64, ppc64le, s390x; x86_64, aarch64 and arm64/v8 accepted)",
      'amd64',
    )
    .option('--insecure', 'allow plain HTTP to the registry (registryTLS.insecure)')
    .option(
      '--insecure-skip-tls-verify',
      "do not verify the registry's TLS certificate (registryTLS.insecureSkipTLSVerify)",
    )
    .option('--ca-file <file>', 'extra trusted CA certificates (PEM); repeatable', collect, [])
    .option(
      '--auth-file <file>',
      'registry credentials (Docker config JSON / podman auth.json); default $REGISTRY_AUTH_FILE, else ' +
        '$XDG_RUNTIME_DIR/containers/auth.json; then ~/.config/containers/auth.json, ~/.docker/config.json',
    );
}

/** Reads the files the flags name; anything wrong with them is a UsageError (exit 2) naming the flag. */
export async function registryAccessFromFlags(
  flags: RegistryFlagValues,
  env: NodeJS.ProcessEnv,
): Promise<RegistryAccess> {
  const target = parseTargetPlatform(flags.arch);
  if (!target.ok) throw new UsageError(`--arch: ${target.message}`);
  const caCertificates: string[] = [];
  for (const file of flags.caFile ?? []) {
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `--ca-file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      );
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new UsageError(`--ca-file ${file}: no PEM certificate in it`);
    }
    caCertificates.push(pem);
  }
  let credentials: RegistryCredentials;
  try {
    credentials = await loadAuthFiles(authFileLookup(flags.authFile, env));
  } catch (err) {
    // The message names the flag, the variable or the default file, and never a secret.
    if (err instanceof CredentialsError) throw new UsageError(err.message);
    throw err;
  }
  return {
    platform: target.platform,
    tls: {
      ...(flags.insecure === true ? { insecure: true } : {}),
      ...(flags.insecureSkipTlsVerify === true ? { insecureSkipTLSVerify: true } : {}),
    },
    caCertificates,
    credentials,
  };
}

/** commander's accumulator for repeatable flags. */
export function collect(value: string, previous: readonly string[]): string[] {
  return [...previous, value];
}

/** The kernel's in-tree module lists, read from driver-toolkit images with the same registry access as the rest. */
export function inTreeModuleLists(source: ImageSource, access: RegistryAccess): InTreeModuleLists {
  return new InTreeModuleLists({
    source,
    credentials: () => Promise.resolve(access.credentials),
    tls: access.tls,
  });
}
