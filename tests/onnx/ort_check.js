// Runs an ONNX model that `silactl export` wrote in ONNX Runtime on a whole
// IDX test split and compares its logits with sila's own
// (`silactl eval --logits`), for tests/integration/onnx.sh:
//
//   node ort_check.js MODEL.onnx DATA_DIR SILA_LOGITS TOLERANCE
//
// DATA_DIR holds t10k-images-idx3-ubyte[.gz]; SILA_LOGITS is raw
// little-endian float32, samples x classes. The images are fed as the
// export documents: float32 (N, 1, H, W), raw pixels / 255, in batches of
// several sizes (the batch dimension is free). Prints the samples, the
// largest absolute logit difference, the samples whose predicted class
// differs, and the smallest margin between sila's two highest logits;
// exits 1 when a class differs or a difference exceeds TOLERANCE, 2 on bad
// usage or unreadable input.
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const ort = require('onnxruntime-node');

const BATCH = 1000;

function fail(status, msg) {
  console.error(`ort_check: ${msg}`);
  process.exit(status);
}

// The bytes of DIR/NAME, or of DIR/NAME.gz uncompressed.
function readMaybeGz(dir, name) {
  const plain = path.join(dir, name);
  if (fs.existsSync(plain)) return fs.readFileSync(plain);
  const gz = plain + '.gz';
  if (fs.existsSync(gz)) return zlib.gunzipSync(fs.readFileSync(gz));
  fail(2, `neither ${plain} nor ${gz} exists`);
}

// IDX images (magic 0x00000803): {n, h, w, pixels (Uint8Array)}.
function readIdxImages(dir) {
  const b = readMaybeGz(dir, 't10k-images-idx3-ubyte');
  if (b.length < 16 || b.readUInt32BE(0) !== 0x803) fail(2, `${dir}: not an IDX image file`);
  const n = b.readUInt32BE(4), h = b.readUInt32BE(8), w = b.readUInt32BE(12);
  if (b.length !== 16 + n * h * w) fail(2, `${dir}: ${b.length} bytes for ${n} images of ${h}x${w}`);
  return {n, h, w, pixels: new Uint8Array(b.buffer, b.byteOffset + 16, n * h * w)};
}

// Index of the largest of row[0..k), the first of equals.
function argmax(row) {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
  return best;
}

async function main() {
  const [model, dataDir, silaPath, tolText] = process.argv.slice(2);
  if (!tolText) fail(2, 'usage: node ort_check.js MODEL.onnx DATA_DIR SILA_LOGITS TOLERANCE');
  const tol = Number(tolText);
  const images = readIdxImages(dataDir);
  const session = await ort.InferenceSession.create(model);
  if (session.inputNames.join() !== 'pixels' || session.outputNames.join() !== 'logits')
    fail(1, `inputs ${session.inputNames}, outputs ${session.outputNames}: expected pixels, logits`);

  const raw = fs.readFileSync(silaPath);
  const sila = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  const classes = sila.length / images.n;
  if (!Number.isInteger(classes) || classes < 2)
    fail(2, `${silaPath}: ${sila.length} floats for ${images.n} images`);

  const plane = images.h * images.w;
  let maxDiff = 0, differ = 0, minMargin = Infinity, start = 0;
  // a full batch, then one of another size, then full ones again: the
  // batch dimension must be free
  for (let i = 0; start < images.n; i++) {
    const nb = Math.min(i === 1 ? 37 : BATCH, images.n - start);
    const x = new Float32Array(nb * plane);
    for (let k = 0; k < nb * plane; k++) x[k] = images.pixels[start * plane + k] / 255;
    const out = await session.run({pixels: new ort.Tensor('float32', x, [nb, 1, images.h, images.w])});
    const y = out.logits;
    if (y.dims.join() !== `${nb},${classes}`) fail(1, `logits of shape [${y.dims}], expected [${nb},${classes}]`);
    for (let s = 0; s < nb; s++) {
      const ours = y.data.subarray(s * classes, (s + 1) * classes);
      const theirs = sila.subarray((start + s) * classes, (start + s + 1) * classes);
      for (let j = 0; j < classes; j++) {
        const d = Math.abs(ours[j] - theirs[j]);
        if (!(d <= maxDiff)) maxDiff = d; // NaN too
      }
      const top = argmax(theirs);
      if (argmax(ours) !== top) differ++;
      for (let j = 0; j < classes; j++)
        if (j !== top) minMargin = Math.min(minMargin, theirs[top] - theirs[j]);
    }
    start += nb;
  }
  console.log(`${images.n} images, ${classes} classes: max |logit difference| ${maxDiff.toExponential(2)}` +
              ` (tolerance ${tol}), predicted class differs on ${differ};` +
              ` smallest margin between sila's top two logits ${minMargin.toExponential(2)}`);
  process.exit(differ === 0 && maxDiff <= tol ? 0 : 1);
}

main().catch((e) => fail(2, e.message));
