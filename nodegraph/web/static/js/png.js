// The `nodegraph` text chunk of a PNG written by nodegraph: {graph: bundle, inputs, ...}
// (nodegraph/exec/png_metadata.py writes it; `nodegraph run image.png` reads the same).
// PNG layout: 8-byte signature, then chunks of length (4, big-endian), type (4), data, CRC (4).

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const KEY = "nodegraph";

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The text chunks of a PNG (tEXt, zTXt, iTXt), by keyword. */
export async function pngText(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error("this file is not a PNG");
  const view = new DataView(buffer);
  const latin1 = new TextDecoder("latin1"), utf8 = new TextDecoder();
  const texts = {};
  for (let at = 8; at + 12 <= bytes.length;) {
    const length = view.getUint32(at);
    const type = latin1.decode(bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, Math.min(bytes.length, at + 8 + length));
    at += 12 + length;
    if (type === "IEND") break;
    if (!["tEXt", "zTXt", "iTXt"].includes(type)) continue;
    const zero = data.indexOf(0);
    if (zero < 0) continue;
    const keyword = latin1.decode(data.subarray(0, zero));
    if (type === "tEXt") texts[keyword] = latin1.decode(data.subarray(zero + 1));
    else if (type === "zTXt") texts[keyword] = latin1.decode(await inflate(data.subarray(zero + 2)));
    else {  // iTXt: keyword 0 compressed method language 0 translated 0 text
      const compressed = data[zero + 1] === 1;
      let rest = zero + 3;
      rest = data.indexOf(0, rest) + 1;   // after the language tag
      rest = data.indexOf(0, rest) + 1;   // after the translated keyword
      const body = data.subarray(rest);
      texts[keyword] = utf8.decode(compressed ? await inflate(body) : body);
    }
  }
  return texts;
}

/** {graph, inputs} from a nodegraph PNG, or an Error saying why not. */
export async function readRecipe(file) {
  const texts = await pngText(await file.arrayBuffer());
  if (!(KEY in texts)) throw new Error(`${file.name} has no nodegraph metadata; only PNGs written by nodegraph can be loaded`);
  let recipe;
  try { recipe = JSON.parse(texts[KEY]); } catch (error) {
    throw new Error(`${file.name}: its nodegraph metadata is damaged (${error.message})`);
  }
  if (!recipe || typeof recipe.graph !== "object" || typeof recipe.inputs !== "object") {
    throw new Error(`${file.name}: its nodegraph metadata holds no graph to re-run`);
  }
  return recipe;
}
