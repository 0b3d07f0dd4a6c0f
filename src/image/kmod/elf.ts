import { KmodError } from './errors.ts';

/**
 * The little of ELF a module check needs: is this a relocatable object (what `insmod` accepts), for which machine,
 * and the bytes of one named section. Hand-written because no maintained npm package parses ELF section headers
 * from a Buffer without native code, and the format subset is small and fixed (System V gABI, "ELF Header" and
 * "Sections").
 */

export type ElfClass = 32 | 64;

export interface ElfSection {
  readonly name: string;
  readonly type: number;
  readonly offset: number;
  readonly size: number;
}

export interface ElfObject {
  readonly elfClass: ElfClass;
  readonly littleEndian: boolean;
  /** e_type: 1 = ET_REL (relocatable), the only kind a kernel module can be. */
  readonly type: number;
  /** e_machine, e.g. 62 = x86-64, 183 = AArch64. */
  readonly machine: number;
  readonly sections: readonly ElfSection[];
}

export const ET_REL = 1;
const SHT_NOBITS = 8;
const SHN_UNDEF = 0;
const SHN_XINDEX = 0xffff;
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** e_machine values of the architectures OpenShift runs on, named as container platforms name them. */
const MACHINE_ARCHITECTURES: ReadonlyMap<number, string> = new Map([
  [3, '386'],
  [62, 'amd64'],
  [183, 'arm64'],
  [21, 'ppc64le'],
  [22, 's390x'],
  [40, 'arm'],
]);

/** The container platform architecture (`amd64`, `arm64`, ...) of an ELF machine, or undefined if not one of ours. */
export function architectureOfMachine(machine: number): string | undefined {
  return MACHINE_ARCHITECTURES.get(machine);
}

/** Parses the ELF header and section table of `bytes`; every offset is bounds-checked against the buffer. */
export function parseElf(bytes: Buffer): ElfObject {
  if (bytes.length < 16 || !bytes.subarray(0, 4).equals(ELF_MAGIC)) {
    throw new KmodError('NOT_ELF', 'not an ELF file (no \\x7fELF magic at the start)');
  }
  const classByte = bytes[4];
  const dataByte = bytes[5];
  if (classByte !== 1 && classByte !== 2) throw new KmodError('NOT_ELF', `invalid ELF class ${classByte}`);
  if (dataByte !== 1 && dataByte !== 2)
    throw new KmodError('NOT_ELF', `invalid ELF data encoding ${dataByte}`);
  const elfClass: ElfClass = classByte === 2 ? 64 : 32;
  const le = dataByte === 1;
  const headerSize = elfClass === 64 ? 64 : 52;
  if (bytes.length < headerSize) {
    throw new KmodError(
      'TRUNCATED',
      `truncated ELF header: ${bytes.length} bytes, the header needs ${headerSize}`,
    );
  }
  const u16 = (at: number): number => (le ? bytes.readUInt16LE(at) : bytes.readUInt16BE(at));
  const u32 = (at: number): number => (le ? bytes.readUInt32LE(at) : bytes.readUInt32BE(at));
  const word = (at: number): number => {
    if (elfClass === 32) return u32(at);
    const value = le ? bytes.readBigUInt64LE(at) : bytes.readBigUInt64BE(at);
    // Anything past 2^53 cannot be an offset into a Buffer we hold: treat as out of bounds.
    return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
  };
  const type = u16(16);
  const machine = u16(18);
  const shoff = word(elfClass === 64 ? 40 : 32);
  const shentsize = u16(elfClass === 64 ? 58 : 46);
  let shnum = u16(elfClass === 64 ? 60 : 48);
  let shstrndx = u16(elfClass === 64 ? 62 : 50);
  const minEntSize = elfClass === 64 ? 64 : 40;
  if (shoff === 0) return { elfClass, littleEndian: le, type, machine, sections: [] };
  if (shentsize < minEntSize)
    throw new KmodError('NOT_ELF', `section header entry size ${shentsize} < ${minEntSize}`);

  const sectionAt = (
    index: number,
  ): { name: number; type: number; offset: number; size: number; link: number } => {
    const base = shoff + index * shentsize;
    if (base + minEntSize > bytes.length) {
      throw new KmodError(
        'TRUNCATED',
        `section header ${index} at offset ${base} lies past the end (${bytes.length} bytes)`,
      );
    }
    return elfClass === 64
      ? {
          name: u32(base),
          type: u32(base + 4),
          offset: word(base + 24),
          size: word(base + 32),
          link: u32(base + 40),
        }
      : {
          name: u32(base),
          type: u32(base + 4),
          offset: u32(base + 16),
          size: u32(base + 20),
          link: u32(base + 24),
        };
  };
  // Extended numbering (gABI): more than 0xff00 sections keep the real counts in section 0.
  if (shnum === 0 || shstrndx === SHN_XINDEX) {
    const first = sectionAt(0);
    if (shnum === 0) shnum = first.size;
    if (shstrndx === SHN_XINDEX) shstrndx = first.link;
  }
  if (shoff + shnum * shentsize > bytes.length) {
    throw new KmodError(
      'TRUNCATED',
      `section table (${shnum} entries at ${shoff}) extends past the end (${bytes.length} bytes)`,
    );
  }
  const raw = Array.from({ length: shnum }, (_, i) => sectionAt(i));
  const checkBounds = (index: number): void => {
    const s = raw[index];
    if (s && s.type !== SHT_NOBITS && s.offset + s.size > bytes.length) {
      throw new KmodError(
        'TRUNCATED',
        `section ${index} (${s.size} bytes at ${s.offset}) extends past the end (${bytes.length} bytes)`,
      );
    }
  };
  const names = shstrndx === SHN_UNDEF || shstrndx >= shnum ? undefined : raw[shstrndx];
  if (names) checkBounds(shstrndx);
  const sections = raw.map((s, index): ElfSection => {
    checkBounds(index);
    let name = '';
    if (names && s.name < names.size) {
      const start = names.offset + s.name;
      const end = bytes.indexOf(0, start);
      name = bytes.toString(
        'latin1',
        start,
        end < 0 || end > names.offset + names.size ? names.offset + names.size : end,
      );
    }
    return { name, type: s.type, offset: s.offset, size: s.type === SHT_NOBITS ? 0 : s.size };
  });
  return { elfClass, littleEndian: le, type, machine, sections };
}

/** The file bytes of the first section named `name`, or undefined. */
export function sectionBytes(bytes: Buffer, elf: ElfObject, name: string): Buffer | undefined {
  const section = elf.sections.find((s) => s.name === name);
  return section ? bytes.subarray(section.offset, section.offset + section.size) : undefined;
}
