// Runs one job of the sandbox-core runner protocol inside a sandbox (JavaScript side).
//
// Started before any code is known (a warm sandbox waits here), it reads one JSON job from stdin
// until EOF: {code, arguments, marker, output_dir, max_artifact_bytes, artifact_extensions,
// promote_working_dir} (run_name is Python's alone). The code runs as a
// CommonJS module body; when it defines main (a function declaration, a const, or
// module.exports.main) the runner awaits main(arguments), so sync and async main both work. One
// result frame is written to stdout after everything the user printed: the job's random marker,
// a JSON object and a newline. Only built-in modules are loaded, and only what the path needs.
"use strict";

const fs = require("fs");
const path = require("path");
const vm = require("vm");

const CODE_FILENAME = "<code>";

function readJob() {
  const chunks = [];
  const buffer = Buffer.alloc(1 << 16);
  for (;;) {
    let count;
    try {
      count = fs.readSync(0, buffer, 0, buffer.length, null);
    } catch (error) {
      if (error.code === "EAGAIN") continue;
      if (error.code === "EOF") break;
      throw error;
    }
    if (count === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, count)));
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function errorInfo(error) {
  if (error instanceof Error) {
    return { type: error.name || "Error", message: String(error.message), traceback: String(error.stack || error) };
  }
  return { type: "Error", message: String(error), traceback: `Uncaught ${String(error)}` };
}

// Move regular files with these extensions from the top of the working directory into the
// output folder (RAGFlow's executor does this for charts saved next to the code).
function promote(outputDir, extensions) {
  for (const entry of fs.readdirSync(".", { withFileTypes: true })) {
    if (!entry.isFile() || entry.name.startsWith(".") || !extensions.includes(path.extname(entry.name).toLowerCase())) continue;
    try { fs.renameSync(entry.name, path.join(outputDir, entry.name)); } catch (_) { /* left where it is */ }
  }
}

function collectArtifacts(outputDir, maxTotal, extensions) {
  const artifacts = [];
  const skipped = [];
  let budget = maxTotal;
  if (!outputDir || !fs.existsSync(outputDir)) return { artifacts, skipped };
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = path.join(dir, entry.name);
      const rel = path.relative(outputDir, full);
      if (entry.isDirectory()) { walk(full); continue; }
      if (!entry.isFile()) continue; // symbolic links are never followed
      if (extensions.length && !extensions.includes(path.extname(entry.name).toLowerCase())) continue;
      const size = fs.statSync(full).size;
      if (size > budget) { skipped.push(rel); continue; }
      const content = fs.readFileSync(full);
      budget -= content.length;
      artifacts.push({ name: rel, mime_type: guessMime(entry.name), size: content.length, content_base64: content.toString("base64") });
    }
  };
  try { walk(outputDir); } catch (error) { skipped.push(String(error.message)); }
  return { artifacts, skipped };
}

const MIME_TYPES = {
  ".txt": "text/plain", ".csv": "text/csv", ".json": "application/json", ".html": "text/html",
  ".md": "text/markdown", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
  ".gif": "image/gif", ".svg": "image/svg+xml", ".pdf": "application/pdf", ".xml": "application/xml",
};

function guessMime(name) {
  return MIME_TYPES[path.extname(name).toLowerCase()] || "application/octet-stream";
}

function emit(marker, frame, valueJson) {
  const rest = JSON.stringify(frame);
  const text = `${marker}{"value": ${valueJson}, ${rest.slice(1)}\n`;
  const data = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(1, data, offset, data.length - offset);
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
    }
  }
}

async function run(job) {
  const frame = { exit_code: 0, error: null, has_main: false };
  let valueJson = "null";
  const outputDir = job.output_dir || null;
  if (outputDir) {
    try { fs.mkdirSync(outputDir, { recursive: true }); process.env.SANDBOX_OUTPUT_DIR = outputDir; } catch (_) { /* no output folder */ }
  }
  try {
    const wrapper = vm.runInThisContext(
      `(function (exports, require, module, __filename, __dirname) {${job.code}\n;return typeof main === "function" ? main : undefined;\n})`,
      { filename: CODE_FILENAME },
    );
    const module = { exports: {} };
    let main = wrapper.call(module.exports, module.exports, require, module, CODE_FILENAME, "/");
    if (typeof main !== "function" && module.exports && typeof module.exports.main === "function") main = module.exports.main;
    if (typeof main === "function") {
      frame.has_main = true;
      const value = await main(job.arguments || {});
      if (value !== undefined) {
        const encoded = JSON.stringify(value);
        if (encoded === undefined) throw new TypeError("main() returned a value that is not JSON data");
        valueJson = encoded;
      }
    }
  } catch (error) {
    const info = errorInfo(error);
    process.stderr.write(`${info.traceback}\n`);
    frame.exit_code = 1;
    frame.error = info;
  }
  const extensions = job.artifact_extensions || [];
  if (outputDir && extensions.length && job.promote_working_dir) {
    try { promote(outputDir, extensions); } catch (_) { /* nothing to promote */ }
  }
  const { artifacts, skipped } = collectArtifacts(outputDir, Number(job.max_artifact_bytes || 0), extensions);
  frame.artifacts = artifacts;
  frame.skipped_artifacts = skipped;
  return { frame, valueJson };
}

function serve() {
  const job = readJob();
  const marker = job.marker;
  process.exitCode = 0;
  const realExit = process.exit.bind(process);
  process.exit = (code) => {
    emit(marker, { exit_code: Number(code || 0), error: null, has_main: false, artifacts: [], skipped_artifacts: [] }, "null");
    realExit(code);
  };
  run(job).then(({ frame, valueJson }) => {
    const finish = () => {
      // Code may set process.exitCode instead of calling process.exit; honour it like node does.
      if (frame.exit_code === 0 && Number(process.exitCode || 0) !== 0) frame.exit_code = Number(process.exitCode);
      emit(marker, frame, valueJson);
      realExit(frame.exit_code);
    };
    // Code without main may still have timers or I/O pending: report once the loop is idle.
    if (frame.has_main || frame.exit_code !== 0) finish();
    else process.once("beforeExit", finish);
  });
}

serve();
