import type forge from 'node-forge';

import { KmodError } from './errors.ts';

/**
 * The signature trailer `scripts/sign-file` appends to a module (kernel `include/uapi/linux/module_signature.h`):
 * `<module> <signature: sig_len bytes> <struct module_signature: 12 bytes> "~Module signature appended~\n"`.
 * The struct is u8 algo, u8 hash, u8 id_type, u8 signer_len, u8 key_id_len, u8 pad[3], be32 sig_len; for PKCS#7
 * (id_type 2, the only kind current kernels accept) every field but id_type and sig_len is 0.
 */

export const MODULE_SIGNATURE_MAGIC = Buffer.from('~Module signature appended~\n', 'latin1');
export const MODULE_SIGNATURE_STRUCT_SIZE = 12;
export const PKEY_ID_PKCS7 = 2;

export interface ModuleSignature {
  /** `PKCS#7`, as modinfo prints sig_id. */
  readonly idType: 'PKCS#7';
  readonly length: number;
  /** The signer's common name from the PKCS#7 SignerInfo issuer, when present (modinfo's `signer`). */
  readonly signer?: string;
  /** Hex serial of the signing certificate (modinfo's `sig_key`). */
  readonly keySerial?: string;
  /** Digest algorithm name, e.g. `sha256` (modinfo's `sig_hashalgo`). */
  readonly hashAlgorithm?: string;
}

export interface SplitModule {
  /** The module without its trailer: what the ELF parser reads. */
  readonly module: Buffer;
  readonly signature: ModuleSignature | null;
}

/**
 * Separates a signature trailer from the module. No trailer magic: unsigned. A trailer whose lengths do not fit the
 * file, whose kind is not PKCS#7, or whose DER does not span exactly `sig_len` bytes is rejected: the kernel would
 * refuse it (`mod_check_sig`), so it must not be reported as signed.
 */
export async function splitSignature(bytes: Buffer): Promise<SplitModule> {
  const magicStart = bytes.length - MODULE_SIGNATURE_MAGIC.length;
  if (magicStart < 0 || !bytes.subarray(magicStart).equals(MODULE_SIGNATURE_MAGIC)) {
    return { module: bytes, signature: null };
  }
  const structStart = magicStart - MODULE_SIGNATURE_STRUCT_SIZE;
  if (structStart < 0) {
    throw new KmodError(
      'BAD_SIGNATURE',
      'signature trailer magic present but the file is too short for struct module_signature',
    );
  }
  const [algo, hash, idType, signerLen, keyIdLen] = bytes.subarray(structStart, structStart + 5);
  const sigLen = bytes.readUInt32BE(structStart + 8);
  if (idType !== PKEY_ID_PKCS7) {
    throw new KmodError(
      'BAD_SIGNATURE',
      `module signature id_type ${idType}, the kernel only accepts PKCS#7 (${PKEY_ID_PKCS7})`,
    );
  }
  if (algo !== 0 || hash !== 0 || signerLen !== 0 || keyIdLen !== 0) {
    throw new KmodError(
      'BAD_SIGNATURE',
      'PKCS#7 module signature with non-zero algo/hash/signer_len/key_id_len fields',
    );
  }
  if (sigLen === 0 || sigLen > structStart) {
    throw new KmodError(
      'BAD_SIGNATURE',
      `module signature claims ${sigLen} bytes but only ${structStart} bytes precede the trailer`,
    );
  }
  const sigStart = structStart - sigLen;
  const der = bytes.subarray(sigStart, structStart);
  return { module: bytes.subarray(0, sigStart), signature: await describePkcs7(der) };
}

/** Reads what modinfo shows of a PKCS#7 signature; the DER must be one object exactly `der.length` bytes long. */
async function describePkcs7(der: Buffer): Promise<ModuleSignature> {
  // Loaded on the first signed module only: node-forge is large and most checks never need it.
  const { default: forge } = await import('node-forge');
  const fromDerStrict = forge.asn1.fromDer as unknown as FromDerStrict;
  let root: forge.asn1.Asn1;
  try {
    root = fromDerStrict(forge.util.createBuffer(der.toString('binary')), {
      strict: true,
      parseAllBytes: true,
      decodeBitStrings: false,
    });
  } catch (err) {
    throw new KmodError(
      'BAD_SIGNATURE',
      `module signature is not one DER object of sig_len ${der.length} bytes: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const signature: { -readonly [K in keyof ModuleSignature]: ModuleSignature[K] } = {
    idType: 'PKCS#7',
    length: der.length,
  };
  // ContentInfo { contentType, [0] SignedData { version, digestAlgorithms, encapContentInfo, [0] certs?, [1] crls?,
  // signerInfos } } (RFC 5652). Anything unexpected just leaves the optional fields unset.
  const signedData = child(child(root, 1), 0);
  const signerInfos = signedData && Array.isArray(signedData.value) ? signedData.value.at(-1) : undefined;
  const signerInfo = child(signerInfos, 0);
  const issuerAndSerial = child(signerInfo, 1);
  const issuer = child(issuerAndSerial, 0);
  const serial = child(issuerAndSerial, 1);
  if (typeof serial?.value === 'string')
    signature.keySerial = forge.util.bytesToHex(serial.value).toUpperCase();
  if (issuer && Array.isArray(issuer.value)) {
    for (const rdn of issuer.value) {
      const attribute = child(rdn, 0);
      const oid = child(attribute, 0);
      const value = child(attribute, 1);
      if (
        typeof oid?.value === 'string' &&
        forge.asn1.derToOid(oid.value) === '2.5.4.3' &&
        typeof value?.value === 'string'
      ) {
        signature.signer = forge.util.decodeUtf8(value.value);
      }
    }
  }
  const digestOid = child(child(signerInfo, 2), 0);
  if (typeof digestOid?.value === 'string') {
    const oid = forge.asn1.derToOid(digestOid.value);
    signature.hashAlgorithm = forge.pki.oids[oid] ?? oid;
  }
  return signature;
}

/** forge's typings declare only the old boolean `strict` argument; the options object is what it implements. */
type FromDerStrict = (
  bytes: forge.util.ByteStringBuffer,
  options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean },
) => forge.asn1.Asn1;

function child(node: forge.asn1.Asn1 | undefined, index: number): forge.asn1.Asn1 | undefined {
  return node && Array.isArray(node.value) ? node.value[index] : undefined;
}
