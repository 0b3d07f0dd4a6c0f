import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createCertificateAuthority,
  issueServingCertificate,
  type CertificateAndKey,
  type ServingCertificateOptions,
} from './certificates.ts';

/** The files `kmm-preflight certs` writes, named as in a cert-manager / kubernetes.io/tls Secret. */
export const CertificateFileNames = {
  caCert: 'ca.crt',
  cert: 'tls.crt',
  key: 'tls.key',
  caKey: 'ca.key',
} as const;

export interface WrittenCertificates {
  readonly caCertFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Set when the CA was kept in a CA directory (its key stays there, never next to the serving files). */
  readonly caKeyFile?: string;
}

export interface WriteServingCertificatesOptions extends ServingCertificateOptions {
  /** Directory for ca.crt, tls.crt and tls.key (created if missing). */
  readonly outDir: string;
  /**
   * Directory holding a reusable CA (ca.crt, ca.key); created there when absent. Reusing it lets a new serving
   * certificate replace the old one without changing the caBundle. Without it the CA key is discarded.
   */
  readonly caDir?: string;
}

/**
 * Makes (or reuses) a CA, issues a serving certificate and writes ca.crt, tls.crt and tls.key. Each file is written
 * to a temporary name and renamed into place, so a process watching the directory never reads half a file; private
 * keys are mode 0600.
 */
export async function writeServingCertificates(
  options: WriteServingCertificatesOptions,
): Promise<WrittenCertificates> {
  const ca =
    options.caDir === undefined
      ? await createCertificateAuthority({ days: options.days })
      : await loadOrCreateCa(options.caDir, options.days);
  const serving = await issueServingCertificate(ca, options);
  await mkdir(options.outDir, { recursive: true });
  const caCertFile = join(options.outDir, CertificateFileNames.caCert);
  const certFile = join(options.outDir, CertificateFileNames.cert);
  const keyFile = join(options.outDir, CertificateFileNames.key);
  await writeFileAtomically(keyFile, serving.keyPem, 0o600);
  await writeFileAtomically(certFile, serving.certPem, 0o644);
  await writeFileAtomically(caCertFile, ca.certPem, 0o644);
  const written = { caCertFile, certFile, keyFile };
  return options.caDir === undefined
    ? written
    : { ...written, caKeyFile: join(options.caDir, CertificateFileNames.caKey) };
}

async function loadOrCreateCa(caDir: string, days: number): Promise<CertificateAndKey> {
  const certFile = join(caDir, CertificateFileNames.caCert);
  const keyFile = join(caDir, CertificateFileNames.caKey);
  const existing = await readPair(certFile, keyFile);
  if (existing !== undefined) return existing;
  const ca = await createCertificateAuthority({ days });
  await mkdir(caDir, { recursive: true, mode: 0o700 });
  await writeFileAtomically(keyFile, ca.keyPem, 0o600);
  await writeFileAtomically(certFile, ca.certPem, 0o644);
  return ca;
}

async function readPair(certFile: string, keyFile: string): Promise<CertificateAndKey | undefined> {
  try {
    return { certPem: await readFile(certFile, 'utf8'), keyPem: await readFile(keyFile, 'utf8') };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes `content` to `file` through a temporary sibling and a rename (atomic on one filesystem). */
export async function writeFileAtomically(file: string, content: string, mode: number): Promise<void> {
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, content, { mode, flag: 'wx' });
    await rename(temporary, file);
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
}
