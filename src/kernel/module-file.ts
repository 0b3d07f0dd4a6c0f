import { posix } from 'node:path';
import { DEFAULT_MODPROBE_DIR } from './constants.ts';

/**
 * Where modprobe will look for a Module's kernel modules in its image, as a matcher over tar entry paths for the
 * image scanner.
 *
 * KMM (eras 0-2) accepted exactly one path: `<dirName>/lib/modules/<kernel>/<moduleName>.ko`. The worker runs
 * `modprobe -d <dirName>`, which resolves names through depmod's index, so a module in a subdirectory
 * (`extra/`, `updates/`), named with `-` instead of `_`, or compressed loads just as well. We accept what
 * modprobe accepts:
 * - anywhere under `<dirName>/lib/modules/<kernel>/` (subdirectories count);
 * - names compare with `-` and `_` folded (the kernel treats them as the same module name);
 * - `.ko`, `.ko.xz`, `.ko.zst`, and `.ko.gz` (kmod built without zlib cannot read `.ko.gz`: the scanner should
 *   say so in its reason, `compression` tells it);
 * - every module of `modulesLoadingOrder` must be present, else the one `moduleName`.
 */

export type ModuleCompression = 'none' | 'xz' | 'zst' | 'gz';

const MODULE_SUFFIXES: readonly { suffix: string; compression: ModuleCompression }[] = [
  { suffix: '.ko', compression: 'none' },
  { suffix: '.ko.xz', compression: 'xz' },
  { suffix: '.ko.zst', compression: 'zst' },
  { suffix: '.ko.gz', compression: 'gz' },
];

export interface ModuleFileQuery {
  /** modprobe's `-d` directory; absent or empty means KMM's default `/opt`. */
  readonly dirName?: string;
  /** The kernel release exactly as the node reports it (`uname -r`). */
  readonly kernel: string;
  readonly moduleName?: string;
  readonly modulesLoadingOrder?: readonly string[];
}

export interface WantedModule {
  /** As written in the Module. */
  readonly name: string;
  /** `-` folded to `_`: how the kernel compares module names. */
  readonly canonicalName: string;
  /** KMM's exact path (tar form, no leading `/`), for reason texts. */
  readonly kmmExactPath: string;
}

export interface ModuleFileMatch {
  /** The wanted module this file provides (its name as written in the Module). */
  readonly module: string;
  readonly path: string;
  readonly compression: ModuleCompression;
  /** True if this is KMM's exact `<dirName>/lib/modules/<kernel>/<moduleName>.ko`. */
  readonly kmmExact: boolean;
}

export interface ModuleFileMatcher {
  /** `<dirName>/lib/modules/` in tar form (`opt/lib/modules/`): every kernel directory of the image is below it. */
  readonly modulesRoot: string;
  /** `<dirName>/lib/modules/<kernel>/` in tar form. */
  readonly kernelDirectory: string;
  /** The modules that must all be found; empty when the Module loads by rawArgs only (nothing to look for). */
  readonly wanted: readonly WantedModule[];
  /** The wanted module a tar path provides, if any. */
  match(path: string): ModuleFileMatch | undefined;
  /** For a path under `modulesRoot`, the kernel directory name it lies in (`5.14.0-284.el9.x86_64`). */
  kernelOf(path: string): string | undefined;
}

/** Canonical module name: the kernel treats `-` and `_` in module names as the same character. */
export function canonicalModuleName(name: string): string {
  return name.replaceAll('-', '_');
}

/** A tar entry path in the form the matcher expects: no leading `/` or `./`, no `.` or empty segments. */
export function normalizeTarPath(path: string): string {
  const normalized = posix.normalize(`/${path}`).slice(1);
  return normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

/** `dirName` in tar form: `/opt` → `opt`, `/` → `` (the image root). */
function dirNameInTar(dirName: string | undefined): string {
  return normalizeTarPath(dirName === undefined || dirName === '' ? DEFAULT_MODPROBE_DIR : dirName);
}

export function createModuleFileMatcher(query: ModuleFileQuery): ModuleFileMatcher {
  const base = dirNameInTar(query.dirName);
  const modulesRoot = `${base === '' ? '' : `${base}/`}lib/modules/`;
  const kernelDirectory = `${modulesRoot}${query.kernel}/`;
  const names =
    query.modulesLoadingOrder !== undefined && query.modulesLoadingOrder.length > 0
      ? query.modulesLoadingOrder
      : query.moduleName !== undefined && query.moduleName !== ''
        ? [query.moduleName]
        : [];
  const wanted: WantedModule[] = [];
  const byCanonical = new Map<string, WantedModule>();
  for (const name of names) {
    const canonicalName = canonicalModuleName(name);
    if (byCanonical.has(canonicalName)) continue;
    const module = { name, canonicalName, kmmExactPath: `${kernelDirectory}${name}.ko` };
    wanted.push(module);
    byCanonical.set(canonicalName, module);
  }

  return {
    modulesRoot,
    kernelDirectory,
    wanted,
    match(path: string): ModuleFileMatch | undefined {
      if (!path.startsWith(kernelDirectory)) return undefined;
      const fileName = path.slice(path.lastIndexOf('/') + 1);
      const kind = MODULE_SUFFIXES.find(
        ({ suffix }) => fileName.endsWith(suffix) && fileName.length > suffix.length,
      );
      if (kind === undefined) return undefined;
      const module = byCanonical.get(canonicalModuleName(fileName.slice(0, -kind.suffix.length)));
      if (module === undefined) return undefined;
      return {
        module: module.name,
        path,
        compression: kind.compression,
        kmmExact: path === module.kmmExactPath,
      };
    },
    kernelOf(path: string): string | undefined {
      if (!path.startsWith(modulesRoot)) return undefined;
      const kernel = path.slice(modulesRoot.length).split('/')[0];
      return kernel === undefined || kernel === '' ? undefined : kernel;
    },
  };
}
