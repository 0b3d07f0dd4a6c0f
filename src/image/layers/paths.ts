/**
 * Paths inside an image, as the union of its layers shows them: relative to the root, no leading `/` or `./`, no
 * `.`/`..` segments (`..` stops at the root, as a runtime's secure join does), no trailing `/`. The root is ''.
 */
export function normalizeImagePath(name: string): string {
  const out: string[] = [];
  for (const segment of name.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return out.join('/');
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

export function baseNameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(dir: string, rest: string): string {
  return dir === '' ? rest : rest === '' ? dir : `${dir}/${rest}`;
}

/** Where a symlink at `linkPath` points: absolute targets from the image root, relative ones from its directory. */
export function symlinkTarget(linkPath: string, target: string): string {
  return normalizeImagePath(target.startsWith('/') ? target : joinPath(parentOf(linkPath), target));
}

/** True when `path` is `dir` itself or lies under it. */
export function isAtOrUnder(path: string, dir: string): boolean {
  return dir === '' || path === dir || path.startsWith(`${dir}/`);
}
