import type { Platform } from './source.ts';

/**
 * The target nodes' architecture as a user gives it. Kernel (`uname -m`) names are accepted as well as the Go names
 * image indexes and the module check use, and are turned into the latter here, once, so every later comparison
 * (index entries, a module's ELF machine) sees one spelling.
 */

/** Kernel and Go spellings of the same architecture. */
const ARCH_ALIASES: Readonly<Record<string, string>> = {
  x86_64: 'amd64',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
  i386: '386',
  i686: '386',
};

const ARCHITECTURE = /^[a-z0-9_]+(\/[a-z0-9]+)?$/;

export function normalizeArchitecture(architecture: string): string {
  const lower = architecture.toLowerCase();
  return ARCH_ALIASES[lower] ?? lower;
}

/** `amd64`, `arm64/v8`: the architecture and variant, which key what is cached per platform of a linux image. */
export function platformKey(platform: Platform): string {
  return platform.variant === undefined
    ? platform.architecture
    : `${platform.architecture}/${platform.variant}`;
}

export type TargetPlatformResult =
  { readonly ok: true; readonly platform: Platform } | { readonly ok: false; readonly message: string };

/** `amd64`, `x86_64`, `arm64/v8`, `aarch64` → a linux Platform with the Go architecture name. */
export function parseTargetPlatform(value: string): TargetPlatformResult {
  const text = value.trim().toLowerCase();
  if (!ARCHITECTURE.test(text)) {
    return {
      ok: false,
      message: `'${value}' is not an architecture; expected one such as amd64, arm64, ppc64le or s390x (x86_64 and aarch64 are accepted)`,
    };
  }
  const [architecture, variant] = text.split('/') as [string, string | undefined];
  return {
    ok: true,
    platform: {
      os: 'linux',
      architecture: normalizeArchitecture(architecture),
      ...(variant === undefined ? {} : { variant }),
    },
  };
}
