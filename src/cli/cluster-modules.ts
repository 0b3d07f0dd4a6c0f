import type { KubeConfig } from '@kubernetes/client-node';

import { KMM_API_VERSION } from '../api/meta.ts';
import type { ManifestDocument } from '../check/manifests.ts';
import { createKubeClient, KubeApiError, loadKubeConfig } from '../platform/kube/client.ts';
import { CommandFailedError, UsageError } from './io.ts';
import { errorMessage } from '../platform/errors.ts';

interface ModuleList {
  readonly items?: Record<string, unknown>[];
  readonly metadata?: { readonly continue?: string };
}

const PAGE_SIZE = 500;

/**
 * The Modules of a cluster, for `check --kubeconfig`: read only (list, paginated), all namespaces or one. They are
 * returned as documents so the offline check treats them exactly like manifests from files.
 *
 * A kubeconfig that cannot be read is a UsageError naming --kubeconfig; an API server that cannot be reached or
 * refuses the list is a CommandFailedError saying what was asked, of which server, and the HTTP status or network
 * error. Neither carries credentials: only the server URL, the status and the server's own message are quoted.
 */
export async function listClusterModules(
  kubeconfig: string,
  env: NodeJS.ProcessEnv,
  namespace?: string,
): Promise<ManifestDocument[]> {
  const kc = readKubeConfig(kubeconfig, env);
  const server = kc.getCurrentCluster()?.server ?? '(no server)';
  const client = createKubeClient(kc);
  const path =
    namespace === undefined
      ? `/apis/${KMM_API_VERSION}/modules`
      : `/apis/${KMM_API_VERSION}/namespaces/${encodeURIComponent(namespace)}/modules`;
  const asked = `listing the Modules ${namespace === undefined ? 'of all namespaces' : `of namespace ${namespace}`}`;
  const documents: ManifestDocument[] = [];
  let continueToken: string | undefined;
  do {
    let page: ModuleList;
    try {
      page = await client.request<ModuleList>('GET', path, {
        query: { limit: PAGE_SIZE, continue: continueToken },
      });
    } catch (err) {
      throw new CommandFailedError(
        `${asked} from ${server} (--kubeconfig ${kubeconfig}) failed: ${whyFailed(err)}`,
      );
    }
    for (const item of page.items ?? []) {
      const metadata = (item['metadata'] ?? {}) as { namespace?: string; name?: string };
      // A list's items carry no apiVersion/kind; put them back so they read like manifests.
      documents.push({
        source: `cluster: ${metadata.namespace ?? ''}/${metadata.name ?? ''}`,
        object: { apiVersion: KMM_API_VERSION, kind: 'Module', ...item },
      });
    }
    continueToken = page.metadata?.continue || undefined;
  } while (continueToken !== undefined);
  return documents;
}

function readKubeConfig(file: string, env: NodeJS.ProcessEnv): KubeConfig {
  try {
    return loadKubeConfig(file, env);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const problem =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'a directory, not a file'
          : code === 'EACCES'
            ? 'not readable (permission denied)'
            : `not a usable kubeconfig (${firstLine(err)})`;
    throw new UsageError(
      `--kubeconfig ${file}: ${problem}; give the kubeconfig file of the cluster whose Modules to check ` +
        '(with a current context), or -f <file or directory> to check manifests instead',
    );
  }
}

const HINTS: Readonly<Record<number, string>> = {
  401: 'the credentials in the kubeconfig were not accepted',
  403: 'the kubeconfig user needs "list" on modules.kmm.sigs.x-k8s.io',
  404: 'the Module API (kmm.sigs.x-k8s.io/v1beta1) is not served: is KMM installed?',
};

function whyFailed(err: unknown): string {
  if (err instanceof KubeApiError) {
    if (err.status === 0) return `the API server did not answer (${networkCause(err)})`;
    const reason = err.reason === undefined ? '' : ` ${err.reason}`;
    const hint = HINTS[err.status];
    // The message is the server's own (metav1.Status message), after "GET <path>: <status>".
    return `HTTP ${err.status}${reason}: ${err.message}${hint === undefined ? '' : ` (${hint})`}`;
  }
  return firstLine(err);
}

/** The innermost cause of a failed fetch: its code and message ("ECONNREFUSED: connect ECONNREFUSED ..."). */
function networkCause(err: Error): string {
  let inner: unknown = err;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  const code = (inner as NodeJS.ErrnoException).code;
  const message = firstLine(inner);
  return code !== undefined && !message.includes(code) ? `${code}: ${message}` : message;
}

function firstLine(err: unknown): string {
  return errorMessage(err).split('\n')[0] ?? '';
}
