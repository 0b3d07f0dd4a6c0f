import { readFile } from 'node:fs/promises';
import { UsageError } from '../cli/io.ts';

/**
 * The extra registry CAs of --ca-file (KMM_PREFLIGHT_CA_FILES), read once at start-up. A file that cannot be read
 * or holds no PEM certificate is a usage error naming it: trusting nothing silently would surface much later as
 * UNABLE_TO_VERIFY_LEAF_SIGNATURE on every module of that registry.
 */
export async function readCaFiles(files: readonly string[]): Promise<string[]> {
  const pems: string[] = [];
  for (const file of files) {
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new UsageError(`--ca-file (KMM_PREFLIGHT_CA_FILES) ${file}: cannot read it (${code})`);
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new UsageError(
        `--ca-file (KMM_PREFLIGHT_CA_FILES) ${file}: no PEM certificate in it; give the CA certificate in PEM form`,
      );
    }
    pems.push(pem);
  }
  return pems;
}
