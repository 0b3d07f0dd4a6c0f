import { canonicalModuleName } from '../../kernel/module-file.ts';
import { moduleNameOfFile } from './compression.ts';
import type { ModulesDep } from './modules-dep.ts';

/**
 * Where a module's dependencies come from. `modprobe -d <dirName>` loads a module's dependencies from what
 * `<dirName>/lib/modules/<kernel>/modules.dep` lists, so:
 * - a dependency modules.dep lists must be a file in the image (depmod saw it there; if it is gone, modprobe fails);
 * - a `depends=` name neither modules.dep nor the image knows must be an in-tree module of the target kernel. The
 *   kernel's own list (its Module.symvers) decides that when it is known; when it is not, the name is assumed
 *   in-tree and reported as such, never as found.
 */
export interface DependencyReport {
  /** In the image. */
  readonly found: readonly string[];
  /** In-tree modules of the target kernel (the list was known). */
  readonly inTree: readonly string[];
  /** Not in the image, and the in-tree list is unknown. */
  readonly assumedInTree: readonly string[];
  /** Neither where modprobe looks nor in-tree, each with a sentence naming it. */
  readonly missing: readonly MissingDependency[];
  /** Set when names were assumed in-tree: why the list is unknown. */
  readonly inTreeUnknown?: { readonly why: string; readonly transient: boolean };
}

export interface MissingDependency {
  readonly name: string;
  readonly reason: string;
}

/** The target kernel's in-tree modules, or why they are unknown. */
export type InTreeModules =
  | {
      readonly known: true;
      /** Folded names (`-` as `_`) of the kernel's modules that export symbols. */
      readonly names: ReadonlySet<string>;
    }
  | {
      readonly known: false;
      /** Why the list is unknown, for the verdict's note. */
      readonly why: string;
      /** True when asking again may give the list (registry unreachable); the verdict is then not kept. */
      readonly transient: boolean;
    };

export interface ModuleFileFacts {
  /** The module's name, as the reasons name it. */
  readonly name: string;
  /** Path of the module relative to `lib/modules/<kernel>/`. */
  readonly path: string;
  /** `depends=` names from its .modinfo. */
  readonly depends: readonly string[];
}

export interface ImageModuleTree {
  /** Module files present under the kernel directory, relative path → true. */
  has(relativePath: string): boolean;
  /** A present module file for a (folded) module name, if any. */
  pathOf(moduleName: string): string | undefined;
}

export interface DependencyContext {
  readonly kernel: string;
  /** The kernel directory as reasons show it: `/opt/lib/modules/<kernel>/`. */
  readonly kernelDirectory: string;
  /** Asked only when a dependency is not in the image; none = unknown (an offline kernel). */
  readonly inTreeModules?: () => Promise<InTreeModules>;
}

const UNKNOWN_LIST: InTreeModules = {
  known: false,
  why: 'no in-tree module list for the kernel (no release driver-toolkit given)',
  transient: false,
};

export async function resolveDependencies(
  module: ModuleFileFacts,
  modulesDep: ModulesDep | null,
  tree: ImageModuleTree,
  context: DependencyContext,
): Promise<DependencyReport> {
  const found: string[] = [];
  const missing: MissingDependency[] = [];
  const outsideImage: string[] = [];
  const seen = new Set<string>();
  const needs = (name: string, why: string): void => {
    missing.push({ name, reason: `${module.name} needs ${name}: ${why}` });
  };
  for (const depPath of modulesDep?.entries.get(module.path) ?? []) {
    const name = moduleNameOfFile(depPath) ?? depPath;
    seen.add(name);
    if (tree.has(depPath)) {
      found.push(name);
      continue;
    }
    const other = tree.pathOf(name);
    needs(
      name,
      other === undefined
        ? `modules.dep lists ${depPath}, which is not in the image`
        : `modules.dep lists ${depPath} but the image holds ${other}`,
    );
  }
  for (const rawName of module.depends) {
    const name = canonicalModuleName(rawName);
    if (seen.has(name)) continue;
    seen.add(name);
    const indexed = modulesDep?.byName.get(name);
    if (indexed !== undefined) {
      if (tree.has(indexed)) found.push(name);
      else needs(name, `modules.dep lists ${indexed}, which is not in the image`);
    } else if (tree.pathOf(name) !== undefined) {
      found.push(name);
    } else {
      outsideImage.push(name);
    }
  }
  if (outsideImage.length === 0) return { found, inTree: [], assumedInTree: [], missing };
  const list = (await context.inTreeModules?.()) ?? UNKNOWN_LIST;
  if (!list.known) {
    return {
      found,
      inTree: [],
      assumedInTree: outsideImage,
      missing,
      inTreeUnknown: { why: list.why, transient: list.transient },
    };
  }
  const inTree: string[] = [];
  for (const name of outsideImage) {
    if (list.names.has(name)) inTree.push(name);
    else {
      missing.push({
        name,
        reason:
          `${module.name} depends on ${name}, which is neither in the image under ${context.kernelDirectory} ` +
          `nor an in-tree module of ${context.kernel}`,
      });
    }
  }
  return { found, inTree, assumedInTree: [], missing };
}
