// wasm-tools component embed, through jco's bundled wasm-tools:
//   node embed.mjs JCO_DIR CORE.wasm WIT_DIR WORLD OUT.wasm
// (jco 1.34's `jco embed --world-name` does not pass the world on, so
// a WIT package with several worlds cannot be embedded from its CLI.)
import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [jcoDir, core, wit, world, out] = process.argv.slice(2);
const tools = await import(pathToFileURL(resolve(jcoDir, 'node_modules/@bytecodealliance/jco-transpile/dist/wasm-tools.js')).href);
const binary = await readFile(core);
const output = await tools.componentEmbed({ binary, witPath: resolve(wit), world });
await writeFile(out, output);
