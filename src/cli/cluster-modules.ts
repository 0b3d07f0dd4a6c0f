import { KMM_API_VERSION } from '../api/meta.ts';
import type { ManifestDocument } from '../check/manifests.ts';
import { createKubeClient, loadKubeConfig } from '../platform/kube/client.ts';

interface ModuleList {
  readonly items?: Record<string, unknown>[];
  readonly metadata?: { readonly continue?: string };
}

const PAGE_SIZE = 500;

/**
 * The Modules of a cluster, for `check --kubeconfig`: read only (list, paginated), all namespaces or one. They are
 * returned as documents so the offline check treats them exactly like manifests from files.
 */
export async function listClusterModules(
  kubeconfig: string,
  env: NodeJS.ProcessEnv,
  namespace?: string,
): Promise<ManifestDocument[]> {
  const client = createKubeClient(loadKubeConfig(kubeconfig, env));
  const path =
    namespace === undefined
      ? `/apis/${KMM_API_VERSION}/modules`
      : `/apis/${KMM_API_VERSION}/namespaces/${encodeURIComponent(namespace)}/modules`;
  const documents: ManifestDocument[] = [];
  let continueToken: string | undefined;
  do {
    const page = await client.request<ModuleList>('GET', path, {
      query: { limit: PAGE_SIZE, continue: continueToken },
    });
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
