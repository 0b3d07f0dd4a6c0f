import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crdFiles } from './crd.ts';

// `npm run gen:crds`: writes the CRDs generated from src/api into manifests/crds/.
const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
for (const file of crdFiles()) {
  const target = join(repositoryRoot, file.path);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, file.content);
  console.log(`wrote ${file.path}`);
}
