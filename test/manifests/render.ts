import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { runCli } from '../support/cli.ts';

const run = promisify(execFile);

export const manifestsDir = resolve(import.meta.dirname, '../../manifests');

/** The webhook Service's DNS name: what the serving certificate must be valid for. */
export const webhookServiceDnsName = 'webhook.kmm-preflight.svc';

export interface ManifestDocument {
  /** Where it came from: a file under manifests/, or an overlay's rendering. */
  readonly source: string;
  readonly object: Record<string, unknown>;
}

/** Parses YAML as Kubernetes does (YAML 1.1: `0444` is octal); null documents (a trailing `---`) are dropped. */
export function parseManifests(text: string, source: string): ManifestDocument[] {
  const documents: ManifestDocument[] = [];
  for (const document of parseAllDocuments(text, { version: '1.1' })) {
    if (document.errors.length > 0) throw new Error(`${source}: ${document.errors[0]?.message ?? ''}`);
    const object: unknown = document.toJS();
    if (object === null) continue;
    if (typeof object !== 'object' || Array.isArray(object))
      throw new Error(`${source}: a document is not a mapping`);
    documents.push({ source, object: object as Record<string, unknown> });
  }
  return documents;
}

/** Every YAML file under manifests/ that holds Kubernetes objects (not kustomizations, not generated certificates). */
export async function manifestFiles(): Promise<string[]> {
  const entries = await readdir(manifestsDir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && /\.ya?ml$/.test(entry.name) && entry.name !== 'kustomization.yaml')
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((path) => !relative(manifestsDir, path).split('/').includes('certs'))
    .sort();
}

export async function loadManifestFile(path: string): Promise<ManifestDocument[]> {
  return parseManifests(await readFile(path, 'utf8'), relative(manifestsDir, path));
}

/** The overlays use kustomize v5 features (`labels`, `replacements`), which kubectl bundles from 1.27 on. */
async function checkKustomizeVersion(): Promise<void> {
  const { stdout } = await run('kubectl', ['version', '--client', '-o', 'json']);
  const { clientVersion, kustomizeVersion = 'none' } = JSON.parse(stdout) as {
    clientVersion?: { gitVersion?: string };
    kustomizeVersion?: string;
  };
  const major = Number(/^v?(\d+)\./.exec(kustomizeVersion)?.[1] ?? 0);
  if (major < 5) {
    throw new Error(
      `kubectl ${clientVersion?.gitVersion ?? '?'} bundles kustomize ${kustomizeVersion}; the overlays need kustomize v5 (kubectl 1.27 or newer)`,
    );
  }
}

/** `kubectl kustomize DIR`, parsed. */
export async function kustomize(dir: string, label: string): Promise<ManifestDocument[]> {
  await checkKustomizeVersion();
  const { stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: 16 << 20 });
  return parseManifests(stdout, label);
}

export interface RenderedOverlays {
  readonly default: ManifestDocument[];
  readonly selfSigned: ManifestDocument[];
  /** Where the self-signed rendering's ca.crt, tls.crt and tls.key are (inside the caller's work directory). */
  readonly certsDir: string;
  /** The CA certificate (PEM) the self-signed rendering was made with. */
  readonly selfSignedCaPem: string;
}

/**
 * Renders both overlays as an administrator would, in `workDir` (the caller's, and the caller removes it). The
 * self-signed overlay needs certificate files, which are never committed: it is rendered from a copy of manifests/
 * with certificates made by the README's `kmm-preflight certs` command.
 */
export async function renderOverlays(workDir: string): Promise<RenderedOverlays> {
  const copy = join(workDir, 'manifests');
  await cp(manifestsDir, copy, { recursive: true });
  const certsDir = join(copy, 'self-signed', 'certs');
  const certs = await runCli(['certs', '--out', certsDir, '--dns', webhookServiceDnsName]);
  if (certs.code !== 0) throw new Error(`kmm-preflight certs failed: ${certs.stderr}`);
  return {
    default: await kustomize(join(copy, 'default'), 'kustomize default'),
    selfSigned: await kustomize(join(copy, 'self-signed'), 'kustomize self-signed'),
    certsDir,
    selfSignedCaPem: await readFile(join(certsDir, 'ca.crt'), 'utf8'),
  };
}

/** A temporary work directory for `use`, removed afterwards. */
export async function withWorkDir<T>(use: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'kmm-manifests-'));
  try {
    return await use(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
