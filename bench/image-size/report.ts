// Prints the size of an image stored in an OCI layout, layer by layer, and how much of it its base brings: the
// report of bench/image-size/build.sh. The layout holds two tags: `image` (what the Dockerfile builds) and `base` (the
// image it starts FROM). Compressed sizes are what a node pulls; uncompressed sizes are what it stores.
import { text } from 'node:stream/consumers';
import { createGunzip } from 'node:zlib';

import { OciLayoutSource } from '../../src/image/oci-layout/source.ts';
import type { Descriptor, ResolvedImage } from '../../src/image/source.ts';

interface HistoryEntry {
  created_by?: string;
  empty_layer?: boolean;
}
interface ImageLayer {
  digest: string;
  compressed: number;
  uncompressed: number;
  createdBy: string;
}

const layoutDir = process.argv[2];
if (layoutDir === undefined) {
  console.error('usage: report.ts <oci-layout-dir>   (with the tags "image" and "base")');
  process.exit(2);
}
// The project's own layout reader: it finds the tags in index.json and checks every blob's digest as it reads.
const layout = new OciLayoutSource();

async function uncompressedSize(image: ResolvedImage, layer: Descriptor): Promise<number> {
  let bytes = 0;
  for await (const chunk of (await layout.openBlob(image, layer)).pipe(createGunzip())) {
    bytes += (chunk as Buffer).length;
  }
  return bytes;
}

const resolveTag = (tag: string): Promise<ResolvedImage> =>
  layout.resolve(`oci:${layoutDir}:${tag}`, { platform: { os: 'linux', architecture: 'amd64' } });

async function readImage(tag: string): Promise<ImageLayer[]> {
  const image = await resolveTag(tag);
  const config = JSON.parse(await text(await layout.openBlob(image, image.manifest.config))) as {
    history?: HistoryEntry[];
  };
  // History has an entry per Dockerfile instruction; only those without empty_layer made a layer, in order.
  const layerHistory = (config.history ?? []).filter((h) => h.empty_layer !== true);
  return Promise.all(
    image.manifest.layers.map(async (layer, i) => ({
      digest: layer.digest,
      compressed: layer.size,
      uncompressed: await uncompressedSize(image, layer),
      createdBy: (layerHistory[i]?.created_by ?? '?')
        .replace(/^\/bin\/sh -c (#\(nop\) )?/, '')
        .replace(/\s+/g, ' '),
    })),
  );
}

const megabytes = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
const sum = (layers: ImageLayer[], key: 'compressed' | 'uncompressed'): number =>
  layers.reduce((total, layer) => total + layer[key], 0);

const image = await readImage('image');
// The base's layers are the image's first ones: its manifest says which, without reading them again.
const baseDigests = new Set((await resolveTag('base')).manifest.layers.map((layer) => layer.digest));
const fromBase = image.filter((layer) => baseDigests.has(layer.digest));
const added = image.filter((layer) => !baseDigests.has(layer.digest));

console.log('compressed   uncompressed  origin  layer');
for (const layer of image) {
  const origin = baseDigests.has(layer.digest) ? 'base' : 'ours';
  console.log(
    `${megabytes(layer.compressed).padStart(10)}   ${megabytes(layer.uncompressed).padStart(12)}  ${origin}    ` +
      layer.createdBy.slice(0, 90),
  );
}
const total = { compressed: sum(image, 'compressed'), uncompressed: sum(image, 'uncompressed') };
for (const [label, layers] of [
  ['base (stand-in)', fromBase],
  ['added by the Dockerfile', added],
] as const) {
  const compressed = sum(layers, 'compressed');
  const uncompressed = sum(layers, 'uncompressed');
  console.log(
    `${label}: ${megabytes(compressed)} compressed (${((100 * compressed) / total.compressed).toFixed(0)}%), ` +
      `${megabytes(uncompressed)} uncompressed (${((100 * uncompressed) / total.uncompressed).toFixed(0)}%)`,
  );
}
console.log(
  `image: ${megabytes(total.compressed)} compressed, ${megabytes(total.uncompressed)} uncompressed`,
);
