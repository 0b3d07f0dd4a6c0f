import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CodedError, errorMessage } from '../src/platform/errors.ts';

/** A certificate and key read from disk and checked to belong together. */
export interface LoadedCertificate {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly notAfter: Date;
  /** SHA-256 fingerprint of the certificate, as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint256: string;
  readonly subjectAltName: string;
  /** Hash over the certificate and key bytes: a change on disk is a different digest. */
  readonly contentDigest: string;
}

export type CertificateLoadErrorCode =
  'ERR_CERT_READ' | 'ERR_CERT_PARSE' | 'ERR_KEY_PARSE' | 'ERR_KEY_MISMATCH';

/** The certificate or key files cannot be used; the message names the file and the problem (never key bytes). */
export class CertificateLoadError extends CodedError<CertificateLoadErrorCode> {}

/** Reads and checks a PEM certificate (chain allowed) and its private key. */
export async function loadCertificate(certFile: string, keyFile: string): Promise<LoadedCertificate> {
  // One after the other: when both are unreadable, the error always names the certificate first.
  const cert = await readOrThrow(certFile, 'certificate');
  const key = await readOrThrow(keyFile, 'private key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new CertificateLoadError(
      'ERR_CERT_PARSE',
      `${certFile} is not a PEM certificate: ${errorMessage(err)}`,
    );
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    // The parser's message may quote key material; say only what the file is not.
    throw new CertificateLoadError('ERR_KEY_PARSE', `${keyFile} is not a PEM private key`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new CertificateLoadError(
      'ERR_KEY_MISMATCH',
      `${keyFile} is not the private key of ${certFile} (were they replaced one at a time? the next change retries)`,
    );
  }
  return {
    cert,
    key,
    notAfter: new Date(x509.validTo),
    fingerprint256: x509.fingerprint256,
    subjectAltName: x509.subjectAltName ?? '',
    contentDigest: createHash('sha256').update(cert).update('\0').update(key).digest('hex'),
  };
}

async function readOrThrow(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new CertificateLoadError(
      'ERR_CERT_READ',
      `cannot read the ${what} file ${file}: ${errorMessage(err)}`,
    );
  }
}

export interface CertificateWatcherOptions {
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate in use; changes are reported relative to it. */
  readonly initial: LoadedCertificate;
  /** Called with each new, valid certificate and key pair. */
  readonly onChange: (certificate: LoadedCertificate) => void;
  /** Called when the files changed but cannot be used; the certificate in use stays. */
  readonly onError: (error: CertificateLoadError) => void;
  /** Fallback poll for filesystems where change notifications are lost (default 10 s). */
  readonly pollIntervalMs?: number;
  /** Wait after a notification before reading, so a burst of writes is read once (default 100 ms). */
  readonly debounceMs?: number;
}

/**
 * Follows a certificate and key on disk, as mounted from a Secret. kubelet updates such a volume by writing a new
 * timestamped directory and atomically swapping the `..data` symlink, so the containing directories are watched
 * (not the files, whose inodes never change through the symlinks) and the contents are compared by digest.
 * A periodic poll covers lost notifications. A half-updated pair (key not matching the certificate) is reported and
 * retried on the next change or poll.
 */
export class CertificateWatcher {
  readonly #options: CertificateWatcherOptions;
  readonly #watchers: FSWatcher[] = [];
  #current: LoadedCertificate;
  #debounce: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  #lastErrorDigest: string | undefined;
  #stopped = false;

  constructor(options: CertificateWatcherOptions) {
    this.#options = options;
    this.#current = options.initial;
  }

  get current(): LoadedCertificate {
    return this.#current;
  }

  start(): void {
    for (const directory of new Set([dirname(this.#options.certFile), dirname(this.#options.keyFile)])) {
      try {
        const watcher = watch(directory, { persistent: false }, () => this.#scheduleReload());
        // A watched directory that disappears (unmounted volume) is not fatal: the poll keeps trying.
        watcher.on('error', () => watcher.close());
        this.#watchers.push(watcher);
      } catch {
        // No notifications on this filesystem; the poll below still notices changes.
      }
    }
    this.#poll = setInterval(() => this.#scheduleReload(), this.#options.pollIntervalMs ?? 10_000);
    this.#poll.unref();
  }

  stop(): void {
    this.#stopped = true;
    for (const watcher of this.#watchers.splice(0)) watcher.close();
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
  }

  /** Reads the files now and applies them if they changed; resolves when done (for tests and SIGHUP-style use). */
  async reload(): Promise<void> {
    if (this.#reloading !== undefined) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.#reloading = this.#reloadOnce().finally(() => {
      this.#reloading = undefined;
      if (this.#reloadAgain && !this.#stopped) {
        this.#reloadAgain = false;
        void this.reload();
      }
    });
    return this.#reloading;
  }

  #scheduleReload(): void {
    if (this.#stopped) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.reload(), this.#options.debounceMs ?? 100);
    this.#debounce.unref();
  }

  // Never rejects: it runs from timers and file notifications, where a rejection would end the process.
  async #reloadOnce(): Promise<void> {
    let loaded: LoadedCertificate;
    try {
      loaded = await loadCertificate(this.#options.certFile, this.#options.keyFile);
    } catch (err) {
      this.#report(
        err instanceof CertificateLoadError
          ? err
          : new CertificateLoadError('ERR_CERT_READ', errorMessage(err)),
      );
      return;
    }
    if (this.#stopped || loaded.contentDigest === this.#current.contentDigest) {
      this.#lastErrorDigest = undefined;
      return;
    }
    try {
      this.#options.onChange(loaded);
    } catch (err) {
      // TLS refused the pair (e.g. a key type it cannot serve): keep the current one, retry on the next change.
      this.#report(
        new CertificateLoadError(
          'ERR_CERT_PARSE',
          `the new certificate cannot be served: ${errorMessage(err)}`,
        ),
      );
      return;
    }
    this.#lastErrorDigest = undefined;
    this.#current = loaded;
  }

  /** Reports a given broken state once, not on every poll. */
  #report(err: CertificateLoadError): void {
    const digest = `${err.code}:${err.message}`;
    if (digest === this.#lastErrorDigest) return;
    this.#lastErrorDigest = digest;
    this.#options.onError(err);
  }
}
