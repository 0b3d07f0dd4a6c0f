import { decompressModule } from './compression.ts';
import { architectureOfMachine, ET_REL, parseElf, sectionBytes } from './elf.ts';
import { KmodError } from './errors.ts';
import { splitSignature, type ModuleSignature } from './signature.ts';

/** What `modinfo` would say about a module file, and whether the kernel could load it at all. */
export interface ModuleInspection {
  readonly elfClass: 32 | 64;
  /** ELF e_machine, and its container architecture name when known. */
  readonly machine: number;
  readonly architecture?: string;
  /** `.modinfo` keys; a key may repeat (alias=, firmware=). */
  readonly modinfo: ReadonlyMap<string, readonly string[]>;
  readonly name?: string;
  readonly vermagic?: string;
  /** First token of vermagic: the kernel release (`uname -r`) the module was built against. */
  readonly kernelRelease?: string;
  /** Module names from `depends=`. */
  readonly depends: readonly string[];
  readonly license?: string;
  readonly signature: ModuleSignature | null;
  /** Size after decompression. */
  readonly size: number;
}

/**
 * Inspects a module file as stored in an image (compressed or not): decompresses within `maxBytes`, splits off a
 * signature trailer, and requires an ELF relocatable object with a `.modinfo` section.
 */
export async function inspectModule(
  fileName: string,
  stored: Buffer,
  maxBytes: number,
): Promise<ModuleInspection> {
  const bytes = await decompressModule(fileName, stored, maxBytes);
  const { module, signature } = await splitSignature(bytes);
  const elf = parseElf(module);
  if (elf.type !== ET_REL) {
    throw new KmodError(
      'NOT_RELOCATABLE',
      `ELF type ${elf.type} is not ET_REL (1): not a loadable kernel module`,
    );
  }
  const section = sectionBytes(module, elf, '.modinfo');
  if (!section)
    throw new KmodError('NO_MODINFO', 'ELF relocatable without a .modinfo section: not a kernel module');
  const modinfo = parseModinfo(section);
  const first = (key: string): string | undefined => modinfo.get(key)?.[0];
  const vermagic = first('vermagic');
  const architecture = architectureOfMachine(elf.machine);
  return {
    elfClass: elf.elfClass,
    machine: elf.machine,
    ...(architecture === undefined ? {} : { architecture }),
    modinfo,
    ...optional('name', first('name')),
    ...optional('vermagic', vermagic),
    ...optional('kernelRelease', vermagic?.trim().split(/\s+/)[0] || undefined),
    depends: (first('depends') ?? '').split(',').filter((d) => d !== ''),
    ...optional('license', first('license')),
    signature,
    size: bytes.length,
  };
}

/** `.modinfo` is a run of NUL-terminated `key=value` strings, with NUL padding between them. */
export function parseModinfo(section: Buffer): Map<string, string[]> {
  const info = new Map<string, string[]>();
  for (const text of section.toString('utf8').split('\0')) {
    const eq = text.indexOf('=');
    if (eq <= 0) continue;
    const key = text.slice(0, eq);
    const values = info.get(key) ?? [];
    values.push(text.slice(eq + 1));
    info.set(key, values);
  }
  return info;
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}
