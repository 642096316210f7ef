// One frame message from the server (realtime/web/live.py, encode): kind "R" = raw RGBA of
// the heads' box, the rest of the frame transparent; "J" = a whole frame as JPEG.
// Header: kind (1 byte), frame width and height, box x, y, w, h (big-endian uint16 each).
function parseFrame(buffer, offset = 0) {
  const view = new DataView(buffer, offset);
  const [W, H, x, y, w, h] = [1, 3, 5, 7, 9, 11].map((at) => view.getUint16(at));
  return { kind: String.fromCharCode(view.getUint8(0)), W, H, x, y, w, h, data: new Uint8Array(buffer, offset + 13) };
}

// Paints the box's pixels at (left, top) of a canvas (the caller has cleared what it needs).
async function paintFrame(ctx, f, left, top) {
  if (f.kind === "R") {
    if (f.w && f.h) {
      const pixels = new Uint8ClampedArray(f.data.buffer, f.data.byteOffset, f.w * f.h * 4);
      ctx.putImageData(new ImageData(pixels, f.w, f.h), left, top);
    }
  } else {
    const bitmap = await createImageBitmap(new Blob([f.data], { type: "image/jpeg" }));
    ctx.drawImage(bitmap, left, top);
    bitmap.close();
  }
}

// The whole frame on a canvas of the frame's size.
async function drawFrame(canvas, buffer, offset = 0) {
  const f = parseFrame(buffer, offset);
  if (canvas.width !== f.W || canvas.height !== f.H) { canvas.width = f.W; canvas.height = f.H; }
  const ctx = canvas.getContext("2d");
  if (f.kind === "R") ctx.clearRect(0, 0, f.W, f.H);
  await paintFrame(ctx, f, f.x, f.y);
}
