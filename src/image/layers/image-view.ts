import type { LayerEntry, LayerRecord } from './layer-reader.ts';
import { isAtOrUnder, joinPath, parentOf, symlinkTarget } from './paths.ts';

/** Where the walk stands on a path: seen (present), ruled out by an upper layer (absent), or not decided yet. */
export type PathState = 'present' | 'absent' | 'unknown';

export interface VisibleEntry {
  readonly entry: LayerEntry;
  /** Index into the manifest's layers (0 = bottom). */
  readonly layerIndex: number;
}

export interface FileRef {
  /** The path asked for (through symlinks, as a process in the container would open it). */
  readonly path: string;
  /** The path the file's bytes are stored under, after following links. */
  readonly storedPath: string;
  readonly layerIndex: number;
  readonly size: number;
}

/**
 * The union filesystem of the layers merged so far, top (last) layer first, as a container runtime would show it:
 * an upper entry hides the same path below; a whiteout hides a path and its subtree below its own layer; an opaque
 * marker hides everything lower layers put in its directory; a non-directory hides whatever lower layers put under
 * its path. Only metadata of every visible entry and the content of captured files are kept.
 */
export class ImageView {
  readonly #visible = new Map<string, VisibleEntry>();
  readonly #contents = new Map<string, Buffer>();
  /** Paths hidden, with their subtrees, from every layer below those merged so far. */
  readonly #hiddenSubtrees = new Set<string>();
  /** Directories whose children lower layers can no longer add. */
  readonly #opaqueDirs = new Set<string>();
  readonly #maxLinkDepth: number;
  #complete = false;

  constructor(maxLinkDepth: number) {
    this.#maxLinkDepth = maxLinkDepth;
  }

  /** True once the bottom layer has been merged: nothing undecided remains. */
  get complete(): boolean {
    return this.#complete;
  }

  markComplete(): void {
    this.#complete = true;
  }

  /** Merges the next layer down. */
  merge(record: LayerRecord, layerIndex: number): void {
    const added: LayerEntry[] = [];
    for (const [path, entry] of record.entries) {
      if (this.#visible.has(path) || this.isShadowed(path)) continue;
      this.#visible.set(path, { entry, layerIndex });
      const content = record.contents.get(path);
      if (content) this.#contents.set(path, content);
      added.push(entry);
    }
    for (const path of record.whiteouts) this.#hiddenSubtrees.add(path);
    for (const dir of record.opaqueDirs) this.#opaqueDirs.add(dir);
    for (const entry of added) if (entry.kind !== 'directory') this.#hiddenSubtrees.add(entry.path);
  }

  /** Adds content fetched later for a visible file (see the walker's second round). */
  addContent(storedPath: string, content: Buffer): void {
    if (this.#visible.get(storedPath)?.entry.kind === 'file') this.#contents.set(storedPath, content);
  }

  /** True if an entry at `path` in a layer not yet merged would be hidden, or is already decided above. */
  isShadowed(path: string): boolean {
    for (let p = path, strict = false; ; p = parentOf(p), strict = true) {
      if (this.#hiddenSubtrees.has(p) || (strict && this.#opaqueDirs.has(p))) return true;
      if (p === '') return false;
    }
  }

  /** The stored entry at exactly `path` (no link following). */
  entryAt(path: string): VisibleEntry | undefined {
    return this.#visible.get(path);
  }

  /**
   * Follows symlinks (in any component) and a final hard link to the regular file a process would open at `path`.
   * `absent` covers dangling links, link loops deeper than the limit, and paths whose parent is a file.
   */
  lookupFile(path: string): { state: 'present'; file: FileRef } | { state: 'absent' | 'unknown' } {
    const resolved = this.#resolve(path, 0);
    if (resolved.state !== 'present') return resolved;
    const visible = resolved.visible;
    if (visible.entry.kind !== 'file') return { state: 'absent' };
    return {
      state: 'present',
      file: {
        path,
        storedPath: visible.entry.path,
        layerIndex: visible.layerIndex,
        size: visible.entry.size,
      },
    };
  }

  /** Captured content of a file found by lookupFile, if the walk kept it. */
  contentOf(file: FileRef): Buffer | undefined {
    return this.#contents.get(file.storedPath);
  }

  /**
   * Every regular file at or under directory `dir` (following symlinks to directories on the way to `dir`, and
   * symlinks to files inside it), by the path a process would see.
   */
  filesUnder(dir: string): FileRef[] {
    const resolvedDir = this.#resolveDirectory(dir);
    if (resolvedDir === undefined) return [];
    const files: FileRef[] = [];
    for (const [storedPath] of this.#visible) {
      if (storedPath === resolvedDir || !isAtOrUnder(storedPath, resolvedDir)) continue;
      const visiblePath = joinPath(dir, storedPath.slice(resolvedDir === '' ? 0 : resolvedDir.length + 1));
      const found = this.lookupFile(visiblePath);
      if (found.state === 'present') files.push(found.file);
    }
    return files;
  }

  /** True when `dir` is a directory of the image (its own entry, a link to one, or implied by entries under it). */
  hasDirectory(dir: string): boolean {
    return this.#resolveDirectory(dir) !== undefined;
  }

  /** Names of the directories (or links to directories) directly inside `dir`. */
  directoriesIn(dir: string): string[] {
    const resolvedDir = this.#resolveDirectory(dir);
    if (resolvedDir === undefined) return [];
    const names = new Set<string>();
    for (const [storedPath, visible] of this.#visible) {
      if (!isAtOrUnder(storedPath, resolvedDir) || storedPath === resolvedDir) continue;
      const rest = storedPath.slice(resolvedDir === '' ? 0 : resolvedDir.length + 1);
      const slash = rest.indexOf('/');
      // A deeper path implies its first component is a directory even without its own tar entry.
      if (
        slash >= 0 ||
        visible.entry.kind === 'directory' ||
        this.#resolveDirectory(joinPath(dir, rest)) !== undefined
      ) {
        names.add(slash >= 0 ? rest.slice(0, slash) : rest);
      }
    }
    return [...names].sort();
  }

  #resolveDirectory(dir: string): string | undefined {
    const resolved = this.#resolve(dir, 0);
    if (resolved.state === 'present')
      return resolved.visible.entry.kind === 'directory' ? resolved.path : undefined;
    if (resolved.path === undefined) return undefined;
    // A directory without its own tar entry exists when something is stored under it.
    const prefix = resolved.path === '' ? '' : `${resolved.path}/`;
    for (const storedPath of this.#visible.keys()) if (storedPath.startsWith(prefix)) return resolved.path;
    return undefined;
  }

  #resolve(
    path: string,
    depth: number,
  ):
    | { state: 'present'; visible: VisibleEntry; path: string }
    | { state: 'absent' | 'unknown'; path?: string } {
    if (depth > this.#maxLinkDepth) return { state: 'absent' };
    const parts = path === '' ? [] : path.split('/');
    let current = '';
    for (let i = 0; i < parts.length; i++) {
      current = joinPath(current, parts[i] ?? '');
      const visible = this.#visible.get(current);
      const last = i === parts.length - 1;
      if (visible === undefined) {
        // Not seen: on the way, a directory implied by entries under it (possibly from the very layer that hid
        // lower copies of it); at the end, absent unless a lower layer not read yet may still add it.
        if (!last) continue;
        return { state: this.isShadowed(current) || this.#complete ? 'absent' : 'unknown', path: current };
      }
      const { entry } = visible;
      if (entry.kind === 'symlink') {
        const target = symlinkTarget(current, entry.linkTarget ?? '');
        return this.#resolve(joinPath(target, parts.slice(i + 1).join('/')), depth + 1);
      }
      if (entry.kind === 'hardlink') {
        return last ? this.#resolve(entry.linkTarget ?? '', depth + 1) : { state: 'absent' };
      }
      if (last) return { state: 'present', visible, path: current };
      if (entry.kind !== 'directory') return { state: 'absent' };
    }
    return { state: 'unknown', path: '' };
  }
}
