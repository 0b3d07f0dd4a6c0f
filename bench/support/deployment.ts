import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parse } from 'yaml';

interface Container {
  readonly name: string;
  readonly env?: readonly { readonly name: string; readonly value?: string }[];
}

/**
 * NODE_OPTIONS of the runner container in the shipped Deployment ('' when it sets none), so that a benchmark runs
 * Node as the cluster does: V8's heap flags move peak RSS by tens of MiB.
 */
export async function runnerNodeOptions(): Promise<string> {
  const file = resolve(import.meta.dirname, '../../manifests/base/runner-deployment.yaml');
  const deployment = parse(await readFile(file, 'utf8')) as {
    spec: { template: { spec: { containers: readonly Container[] } } };
  };
  const runner = deployment.spec.template.spec.containers.find((container) => container.name === 'runner');
  return runner?.env?.find((variable) => variable.name === 'NODE_OPTIONS')?.value ?? '';
}
