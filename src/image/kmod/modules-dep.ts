import { moduleNameOfFile } from './compression.ts';

/**
 * depmod's text index, `modules.dep`: one line per module, `<path>: <dependency path> ...`, in load order of the
 * dependencies reversed (modprobe loads them right to left). Paths are relative to `lib/modules/<kernel>/` (kmod
 * since 2011); older depmod wrote absolute `/lib/modules/<kernel>/...` paths, which are accepted too.
 */
export interface ModulesDep {
  /** Module path (relative to the kernel directory) → its dependencies' paths, as depmod listed them. */
  readonly entries: ReadonlyMap<string, readonly string[]>;
  /** Folded module name → its path, for looking modules up by name as modprobe does. */
  readonly byName: ReadonlyMap<string, string>;
}

export interface ModulesDepLocation {
  readonly kernel: string;
  /** The `modprobe -d` root as a path inside the image, without leading `/` (`opt`, or '' for `/`). */
  readonly root: string;
}

export function parseModulesDep(text: string, location: ModulesDepLocation): ModulesDep {
  const entries = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = relativeModulePath(line.slice(0, colon), location);
    const deps = line
      .slice(colon + 1)
      .split(/\s+/)
      .filter((d) => d !== '')
      .map((d) => relativeModulePath(d, location));
    entries.set(path, deps);
    const name = moduleNameOfFile(path);
    // modprobe takes the first line for a name; later duplicates are shadowed.
    if (name !== undefined && !byName.has(name)) byName.set(name, path);
  }
  return { entries, byName };
}

/** Normalises a modules.dep path to one relative to `lib/modules/<kernel>/`. */
export function relativeModulePath(path: string, { kernel, root }: ModulesDepLocation): string {
  const trimmed = path.replace(/^\/+/, '');
  for (const prefix of [`${root === '' ? '' : `${root}/`}lib/modules/${kernel}/`, `lib/modules/${kernel}/`]) {
    if (trimmed.startsWith(prefix)) return trimmed.slice(prefix.length);
  }
  return path.startsWith('/') ? trimmed : path;
}
