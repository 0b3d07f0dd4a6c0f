import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KMM_GROUP } from '../api/meta.ts';
import { CodedError } from '../platform/errors.ts';

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

/** Input that could not be read: a file, or one document of it. The run reports it and must not pass over it. */
export interface InputProblem {
  /** The file (or, for "no Module found", the -f paths). */
  readonly file: string;
  /** The 1-based index of the broken document in the file; absent when the file itself could not be read. */
  readonly document?: number;
  readonly message: string;
}

/** `file#3`, or `file` when the whole file is concerned. */
export function inputProblemSource(problem: InputProblem): string {
  return problem.document === undefined ? problem.file : `${problem.file}#${problem.document}`;
}

export interface LoadedManifests {
  readonly modules: readonly ManifestDocument[];
  /** One line per document that was skipped, and why. */
  readonly notes: readonly string[];
  /** Files and documents that could not be read or parsed. */
  readonly errors: readonly InputProblem[];
}

export class ManifestPathError extends CodedError<'ERR_MANIFEST_PATH'> {
  constructor(message: string) {
    super('ERR_MANIFEST_PATH', message);
  }
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export async function loadManifests(paths: readonly string[]): Promise<LoadedManifests> {
  const modules: ManifestDocument[] = [];
  const notes: string[] = [];
  const errors: InputProblem[] = [];
  for (const file of await expandPaths(paths)) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      errors.push({
        file,
        message: `cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      });
      continue;
    }
    const documents = parseAllDocuments(text, { prettyErrors: true });
    const list = Array.isArray(documents) ? documents : [documents];
    list.forEach((doc, index) => {
      const source = list.length > 1 ? `${file}#${index + 1}` : file;
      if (doc.errors.length > 0) {
        const message = (doc.errors[0]?.message ?? 'parse error').split('\n')[0] ?? '';
        errors.push({ file, document: index + 1, message: `not valid YAML: ${message}` });
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
    // Symlinked files count (reading follows them; a dangling one is reported); symlinked directories are not
    // followed, so a link cycle cannot make the walk endless.
    else if ((entry.isFile() || entry.isSymbolicLink()) && MANIFEST_EXTENSIONS.has(extname(entry.name)))
      files.push(path);
  }
  return files;
}
