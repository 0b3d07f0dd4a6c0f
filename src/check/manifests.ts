import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KMM_GROUP } from '../api/meta.ts';

/**
 * Reads Module manifests the way `kubectl apply -f` would take them: files or directories (recursively) of YAML
 * or JSON, several documents per file, `List` kinds unwrapped. Everything that is not a Module is set aside with
 * a note rather than failing the run, because a GitOps directory mixes Modules with everything else.
 */

export interface ManifestDocument {
  /** `file` or `file#3` (the 1-based document index) for messages. */
  readonly source: string;
  readonly object: Record<string, unknown>;
}

export interface LoadedManifests {
  readonly modules: readonly ManifestDocument[];
  /** One line per document that was skipped, and why. */
  readonly notes: readonly string[];
  /** Documents that could not be parsed; the run must not report success over them. */
  readonly errors: readonly string[];
}

export class ManifestPathError extends Error {
  readonly code = 'ERR_MANIFEST_PATH';
  constructor(message: string) {
    super(message);
    this.name = 'ManifestPathError';
  }
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export async function loadManifests(paths: readonly string[]): Promise<LoadedManifests> {
  const modules: ManifestDocument[] = [];
  const notes: string[] = [];
  const errors: string[] = [];
  for (const file of await expandPaths(paths)) {
    const text = await readFile(file, 'utf8');
    const documents = parseAllDocuments(text, { prettyErrors: true });
    const list = Array.isArray(documents) ? documents : [documents];
    list.forEach((doc, index) => {
      const source = list.length > 1 ? `${file}#${index + 1}` : file;
      if (doc.errors.length > 0) {
        errors.push(`${source}: not valid YAML: ${doc.errors[0]?.message ?? 'parse error'}`);
        return;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return; // an empty document, e.g. a trailing `---`
      collect(value, source, modules, notes);
    });
  }
  return { modules, notes, errors };
}

function collect(value: unknown, source: string, modules: ManifestDocument[], notes: string[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    notes.push(`${source}: skipped, not a Kubernetes object`);
    return;
  }
  const object = value as Record<string, unknown>;
  const kind = typeof object['kind'] === 'string' ? object['kind'] : undefined;
  const apiVersion = typeof object['apiVersion'] === 'string' ? object['apiVersion'] : '';
  if (kind !== undefined && kind.endsWith('List') && Array.isArray(object['items'])) {
    (object['items'] as unknown[]).forEach((item, i) =>
      collect(item, `${source} items[${i}]`, modules, notes),
    );
    return;
  }
  if (kind === 'Module' && apiVersion.split('/')[0] === KMM_GROUP) {
    modules.push({ source, object });
    return;
  }
  const metadata = object['metadata'] as { name?: unknown } | undefined;
  const name = typeof metadata?.name === 'string' ? ` ${metadata.name}` : '';
  notes.push(
    `${source}: skipped ${kind ?? 'an object without kind'}${name} (${apiVersion || 'no apiVersion'}), not a KMM Module`,
  );
}

/** Files in the order given; a directory contributes its manifest files, sorted, recursively. */
async function expandPaths(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    let info;
    try {
      info = await stat(path);
    } catch {
      throw new ManifestPathError(`-f ${path}: no such file or directory`);
    }
    if (info.isDirectory()) {
      files.push(...(await walk(path)));
    } else {
      files.push(path);
    }
  }
  return files;
}

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  const files: string[] = [];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await walk(path)));
    else if (entry.isFile() && MANIFEST_EXTENSIONS.has(extname(entry.name))) files.push(path);
  }
  return files;
}
