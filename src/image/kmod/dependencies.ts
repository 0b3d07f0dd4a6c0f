import { canonicalModuleName } from '../../kernel/module-file.ts';
import { moduleNameOfFile } from './compression.ts';
import type { ModulesDep } from './modules-dep.ts';

/**
 * Which of a module's dependencies the image provides. `modprobe -d <dirName>` loads a module's dependencies from
 * what `<dirName>/lib/modules/<kernel>/modules.dep` lists, so:
 * - a dependency modules.dep lists must be a file in the image (depmod saw it there; if it is gone, modprobe fails);
 * - a `depends=` name neither modules.dep nor the image knows can only work if it is an in-tree module of the
 *   target kernel already loaded on the node. The image cannot show that, so it is reported as such, not as found.
 */
export interface DependencyReport {
  /** Names of dependencies present in the image. */
  readonly found: readonly string[];
  /** Dependencies the image should hold but does not, each with why. */
  readonly missing: readonly MissingDependency[];
  /** `depends=` names not in the image and not in modules.dep: must be in-tree modules of the target kernel. */
  readonly outsideImage: readonly string[];
}

export interface MissingDependency {
  readonly name: string;
  readonly reason: string;
}

export interface ModuleFileFacts {
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

export function resolveDependencies(
  module: ModuleFileFacts,
  modulesDep: ModulesDep | null,
  tree: ImageModuleTree,
): DependencyReport {
  const found: string[] = [];
  const missing: MissingDependency[] = [];
  const outsideImage: string[] = [];
  const seen = new Set<string>();
  for (const depPath of modulesDep?.entries.get(module.path) ?? []) {
    const name = moduleNameOfFile(depPath) ?? depPath;
    seen.add(name);
    if (tree.has(depPath)) {
      found.push(name);
      continue;
    }
    const other = tree.pathOf(name);
    missing.push({
      name,
      reason:
        other === undefined
          ? `modules.dep lists ${depPath}, which is not in the image`
          : `modules.dep lists ${depPath} but the image holds ${other}`,
    });
  }
  for (const rawName of module.depends) {
    const name = canonicalModuleName(rawName);
    if (seen.has(name)) continue;
    seen.add(name);
    const indexed = modulesDep?.byName.get(name);
    if (indexed !== undefined) {
      if (tree.has(indexed)) found.push(name);
      else missing.push({ name, reason: `modules.dep lists ${indexed}, which is not in the image` });
    } else if (tree.pathOf(name) !== undefined) {
      found.push(name);
    } else {
      outsideImage.push(name);
    }
  }
  return { found, missing, outsideImage };
}
