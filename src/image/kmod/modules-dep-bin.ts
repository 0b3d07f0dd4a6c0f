import { KmodError } from './errors.ts';

/**
 * depmod's binary index, `modules.dep.bin`: the same lines as `modules.dep`, keyed by module name in a prefix trie
 * that modprobe reads instead of the text file (kmod `libkmod-index.c`, format 2.1). Big-endian: u32 magic
 * 0xB007F457, u32 version, u32 root; a node reference carries flags in its top 4 bits (0x8 prefix string, 0x4
 * values, 0x2 children) and the file offset in the rest. A node is [prefix NUL] [u8 first, u8 last, u32 child
 * for each byte first..last] [u32 count, then per value u32 priority and NUL-terminated text]. Hand-written: no
 * npm package reads kmod indexes.
 */
const MAGIC = 0xb007f457;
const MAJOR_VERSION = 2;
const PREFIX = 0x80000000;
const VALUES = 0x40000000;
const CHILDS = 0x20000000;
const OFFSET_MASK = 0x0fffffff;
/** Module names are short; a deeper trie is a corrupt or hostile file. */
const MAX_DEPTH = 1024;

/** The index's entries as `modules.dep` text lines (`<path>: <deps>`), for parseModulesDep. */
export function modulesDepTextFromIndex(bytes: Buffer): string {
  if (bytes.length < 12 || bytes.readUInt32BE(0) !== MAGIC) {
    throw new KmodError('BAD_MODULES_DEP', 'modules.dep.bin is not a kmod index (bad magic)');
  }
  const major = bytes.readUInt16BE(4);
  if (major !== MAJOR_VERSION) {
    throw new KmodError(
      'BAD_MODULES_DEP',
      `modules.dep.bin has index version ${major}, expected ${MAJOR_VERSION}`,
    );
  }
  const lines: string[] = [];
  const visited = new Set<number>();
  const u32 = (at: number): number => {
    if (at + 4 > bytes.length) throw truncated();
    return bytes.readUInt32BE(at);
  };
  const text = (at: number): { value: string; next: number } => {
    const end = bytes.indexOf(0, at);
    if (end < 0) throw truncated();
    return { value: bytes.toString('utf8', at, end), next: end + 1 };
  };
  const walk = (reference: number, depth: number): void => {
    const offset = reference & OFFSET_MASK;
    if (offset === 0) return;
    if (depth > MAX_DEPTH || visited.has(offset)) {
      throw new KmodError('BAD_MODULES_DEP', 'modules.dep.bin has a cycle or is nested too deep');
    }
    visited.add(offset);
    let at = offset;
    if (reference & PREFIX) at = text(at).next;
    const children: number[] = [];
    if (reference & CHILDS) {
      if (at + 2 > bytes.length) throw truncated();
      const count = (bytes[at + 1] ?? 0) - (bytes[at] ?? 0) + 1;
      at += 2;
      for (let i = 0; i < count; i++, at += 4) children.push(u32(at));
    }
    if (reference & VALUES) {
      const count = u32(at);
      at += 4;
      for (let i = 0; i < count; i++) {
        at += 4; // priority
        const value = text(at);
        lines.push(value.value);
        at = value.next;
      }
    }
    for (const child of children) walk(child, depth + 1);
  };
  walk(u32(8), 0);
  return `${lines.join('\n')}\n`;
}

function truncated(): KmodError {
  return new KmodError('BAD_MODULES_DEP', 'modules.dep.bin is truncated');
}
