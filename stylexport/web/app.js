// stylexport web app: runs the exported ONNX model with ONNX Runtime Web, on WebGPU when the browser has it and
// on WebAssembly otherwise. Everything runs in this page; no pixel is sent anywhere (see the CSP in index.html).
// The strength and keep-colours controls use the formulas of stylexport/controls.py, so a photo stylized here
// matches `stylexport stylize --strength S [--preserve-colors]` to within rounding.
import * as ort from "./ort/ort.webgpu.min.mjs";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { session: null, contract: null, backend: "", photo: null, stylized: null, camera: null, busy: false };

function setState(name, message) {
  document.body.dataset.state = name;
  if (message !== undefined) $("status").textContent = message;
}

// --- controls.py, in JavaScript ----------------------------------------------------------------------------
// BT.601 full range (JPEG) YCbCr; the inverse is computed from the same matrix, as controls.py does.
const RGB_TO_YCC = [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]];
const YCC_TO_RGB = invert3(RGB_TO_YCC);

function invert3(m) {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const det = a * A + b * B + c * C;
  return [[A / det, -(b * i - c * h) / det, (b * f - c * e) / det],
          [B / det, (a * i - c * g) / det, -(a * f - c * d) / det],
          [C / det, -(a * h - b * g) / det, (a * e - b * d) / det]];
}

const clamp255 = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

// stylized, content: Float32Array planes (3, H, W) in [0, 255]. Returns the controlled image, same layout.
export function applyControls(stylized, content, strength, keepColors) {
  const n = content.length / 3;
  let out = stylized;
  if (keepColors) {
    out = new Float32Array(stylized.length);
    const [m0, m1, m2] = RGB_TO_YCC, [k0, k1, k2] = YCC_TO_RGB;
    for (let p = 0; p < n; p++) {
      const sr = stylized[p], sg = stylized[n + p], sb = stylized[2 * n + p];
      const cr = content[p], cg = content[n + p], cb = content[2 * n + p];
      const y = m0[0] * sr + m0[1] * sg + m0[2] * sb;  // stylized luma
      const u = m1[0] * cr + m1[1] * cg + m1[2] * cb;  // content chroma (centred: the +128 and -128 cancel)
      const v = m2[0] * cr + m2[1] * cg + m2[2] * cb;
      out[p] = clamp255(k0[0] * y + k0[1] * u + k0[2] * v);
      out[n + p] = clamp255(k1[0] * y + k1[1] * u + k1[2] * v);
      out[2 * n + p] = clamp255(k2[0] * y + k2[1] * u + k2[2] * v);
    }
  }
  if (strength >= 1) return out;
  if (strength <= 0) return content;
  const blended = new Float32Array(out.length);
  for (let i = 0; i < out.length; i++) blended[i] = content[i] + strength * (out[i] - content[i]);
  return blended;
}

// --- pixels <-> planes --------------------------------------------------------------------------------------
function toPlanes(imageData) {
  const { data, width, height } = imageData, n = width * height, planes = new Float32Array(3 * n);
  for (let p = 0; p < n; p++) {
    planes[p] = data[4 * p];
    planes[n + p] = data[4 * p + 1];
    planes[2 * n + p] = data[4 * p + 2];
  }
  return planes;
}

// An image with a side under the model's smallest (36 px for a network that pads its edges by 32) is
// reflect-padded up to it, in the rounds of stylexport/image.py's reflect_pad_to (so the Python pipeline, the
// C++ host and this page feed the model the same pixels), and the result cropped back.
function padPlane(grid, top, bottom, left, right, replicate) {
  const w = grid.w + left + right, h = grid.h + top + bottom, data = new Float32Array(3 * w * h);
  const source = (i, n) => (replicate ? Math.min(Math.max(i, 0), n - 1) : i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      const row = (c * grid.h + source(y - top, grid.h)) * grid.w;
      for (let x = 0; x < w; x++) data[(c * h + y) * w + x] = grid.data[row + source(x - left, grid.w)];
    }
  }
  return { data, w, h };
}

function reflectPadTo(planes, width, height, least) {
  let grid = { data: planes, w: width, h: height }, top = 0, left = 0;
  if (width === 1 || height === 1) grid = padPlane(grid, 0, height === 1 ? 1 : 0, 0, width === 1 ? 1 : 0, true);
  while (Math.min(grid.w, grid.h) < least) {
    const growH = Math.min(Math.max(least - grid.h, 0), 2 * (grid.h - 1));
    const growW = Math.min(Math.max(least - grid.w, 0), 2 * (grid.w - 1));
    const t = Math.floor(growH / 2), l = Math.floor(growW / 2);
    grid = padPlane(grid, t, growH - t, l, growW - l, false);
    top += t;
    left += l;
  }
  return { ...grid, top, left };
}

function cropPlanes(planes, w, h, top, left, width, height) {
  const out = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const from = (c * h + top + y) * w + left;
      out.set(planes.subarray(from, from + width), (c * height + y) * width);
    }
  }
  return out;
}

function toImageData(planes, width, height) {
  const n = width * height, rgba = new Uint8ClampedArray(4 * n);
  for (let p = 0; p < n; p++) {  // clamp, then round half up (Python rounds half to even: a tie is 1 level off)
    rgba[4 * p] = Math.round(clamp255(planes[p]));
    rgba[4 * p + 1] = Math.round(clamp255(planes[n + p]));
    rgba[4 * p + 2] = Math.round(clamp255(planes[2 * n + p]));
    rgba[4 * p + 3] = 255;
  }
  return new ImageData(rgba, width, height);
}

function fit(width, height) {  // the size select: longer side to N px (0: original), never shrunk below 1 px
  const limit = Number($("size").value);
  const scale = limit > 0 ? Math.min(1, limit / Math.max(width, height)) : 1;
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

function draw(canvas, source, width, height) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.fillStyle = "#fff";  // transparency on white, as Python and the C++ host read a PNG with alpha
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(source, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height);
}

// --- the model ------------------------------------------------------------------------------------------------
async function createSession(contract) {
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  // Threads need a cross-origin isolated page (COOP/COEP headers); plain static servers give one thread.
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const wanted = params.get("ep");  // ?ep=wasm forces WebAssembly (the tests), ?ep=webgpu insists on WebGPU
  if (wanted !== "wasm" && "gpu" in navigator) {
    try {
      if (await navigator.gpu.requestAdapter()) {
        const session = await ort.InferenceSession.create(contract.model, { executionProviders: ["webgpu"] });
        return [session, "WebGPU"];
      }
    } catch (error) {
      console.warn("WebGPU unavailable, using WebAssembly:", error);
    }
  }
  if (wanted === "webgpu") throw new Error("this browser has no usable WebGPU adapter");
  const session = await ort.InferenceSession.create(contract.model, { executionProviders: ["wasm"] });
  return [session, `WebAssembly (${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads > 1 ? "s" : ""})`];
}

async function stylize(imageData) {
  const { width, height } = imageData, content = toPlanes(imageData);
  const least = Number(state.contract.min_side);
  const fed = Math.min(width, height) < least ? reflectPadTo(content, width, height, least)
    : { data: content, w: width, h: height, top: 0, left: 0 };
  const input = new ort.Tensor("float32", fed.data, [1, 3, fed.h, fed.w]);
  const start = performance.now();
  const results = await state.session.run({ [state.contract.input_name]: input });
  const output = results[state.contract.output_name];
  let stylized = output.data instanceof Float32Array ? output.data : await output.getData();
  const modelMs = performance.now() - start;
  if (fed.data !== content) stylized = cropPlanes(stylized, fed.w, fed.h, fed.top, fed.left, width, height);
  return { content, stylized, width, height, modelMs };
}

function render() {
  const r = state.stylized;
  if (!r) return;
  const planes = applyControls(r.stylized, r.content, Number($("strength").value), $("colors").checked);
  const canvas = $("result");
  canvas.width = r.width;
  canvas.height = r.height;
  canvas.getContext("2d").putImageData(toImageData(planes, r.width, r.height), 0, 0);
  canvas.toBlob((blob) => {
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.setAttribute("aria-disabled", "false");
  }, "image/png");
}

function report(r, totalMs) {
  return `${state.backend} · ${r.width}x${r.height} · model ${r.modelMs.toFixed(1)} ms, ` +
         `frame ${totalMs.toFixed(1)} ms (${(1000 / totalMs).toFixed(1)} fps)`;
}

async function stylizePhoto(bitmap) {
  stopCamera();
  state.photo = bitmap;
  const [w, h] = fit(bitmap.width, bitmap.height);
  const imageData = draw($("source"), bitmap, w, h);
  setState("busy", `Stylizing ${w}x${h} on ${state.backend}…`);
  const start = performance.now();
  try {
    state.stylized = await stylize(imageData);
    render();
    setState("done", report(state.stylized, performance.now() - start));
  } catch (error) {
    setState("error", `error: ${error.message || error}`);
  }
}

async function openFile(file) {
  if (!file || !file.type.startsWith("image/")) {
    setState("error", `error: ${file ? file.name : "nothing"} is not an image; choose a JPEG, PNG or WebP photo`);
    return;
  }
  try {
    // imageOrientation: a phone's portrait photo, stored on its side with an EXIF orientation, stands upright, as
    // Python and the C++ host read it; colorSpaceConversion "default": a photo's embedded colour profile (a
    // phone's Display P3) is applied into the canvas's sRGB, as Python applies it (the stored numbers, untouched,
    // are other colours)
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: "default", premultiplyAlpha: "none",
                                                   imageOrientation: "from-image" });
    await stylizePhoto(bitmap);
  } catch (error) {
    setState("error", `error: cannot read ${file.name} (${error.message || error}); try another photo`);
  }
}

// --- the camera -----------------------------------------------------------------------------------------------
async function startCamera() {
  if (state.camera) return stopCamera();
  if (!navigator.mediaDevices?.getUserMedia) {
    setState("error", "error: this browser gives no camera here (cameras need https:// or localhost)");
    return;
  }
  try {
    state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    setState("error", `error: no camera (${error.message || error}); allow the camera for this page`);
    return;
  }
  const video = $("video");
  video.srcObject = state.camera;
  await video.play();
  $("camera").textContent = "Stop the camera";
  const loop = async () => {
    if (!state.camera) return;
    const [w, h] = fit(video.videoWidth, video.videoHeight);
    const start = performance.now();
    state.stylized = await stylize(draw($("source"), video, w, h));
    render();
    setState("done", report(state.stylized, performance.now() - start));
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}

function stopCamera() {
  if (!state.camera) return;
  state.camera.getTracks().forEach((track) => track.stop());
  state.camera = null;
  $("camera").textContent = "Start the camera";
}

// --- wiring ---------------------------------------------------------------------------------------------------
async function main() {
  try {
    const response = await fetch("model.json");
    state.contract = await response.json();
    $("about").textContent = `${state.contract.style_name} · stylexport ${state.contract.stylexport_version} · ` +
                             `ONNX Runtime Web ${state.contract.onnxruntime_web_version}`;
    [state.session, state.backend] = await createSession(state.contract);
  } catch (error) {
    setState("error", `error: cannot load the model (${error.message || error}); serve this folder with a ` +
                      "static file server (python -m http.server) and open it over http://");
    return;
  }
  setState("ready", `Ready on ${state.backend}: choose or drop a photo, or start the camera.`);
  $("file").addEventListener("change", (event) => openFile(event.target.files[0]));
  $("camera").addEventListener("click", startCamera);
  $("strength").addEventListener("input", () => {
    $("strength-value").textContent = Number($("strength").value).toFixed(2);
    render();
  });
  $("colors").addEventListener("change", render);
  $("size").addEventListener("change", () => state.photo && !state.camera && stylizePhoto(state.photo));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    openFile(event.dataTransfer.files[0]);
  });
  for (const [key, id] of [["strength", "strength"], ["size", "size"]]) {
    if (params.has(key)) $(id).value = params.get(key);
  }
  if (params.get("colors") === "1") $("colors").checked = true;
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
}

main();
