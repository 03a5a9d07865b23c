// Runs one job of the sandbox-core runner protocol inside a sandbox (JavaScript side).
//
// Started before any code is known (a warm sandbox waits here), it reads one JSON job from stdin
// until EOF: {marker, code, arguments, output_dir, max_artifact_bytes, max_value_bytes,
// artifact_extensions, promote_working_dir} (run_name is Python's alone). The code
// runs as a CommonJS module body; when it defines main (a function declaration, a const, or
// module.exports.main) the runner awaits main(arguments), so sync and async main both work. One
// result frame is written to stdout after everything the user printed: the job's random marker,
// a JSON object and a newline. Only built-in modules are loaded, and only what the path needs.
//
// User code runs in this process, so the runner defends the frame from it (see
// sandbox_core.runner.protocol for what remains possible): the marker is kept in a buffer outside
// the JavaScript heap, reachable only from this module's closures; every function the frame path
// uses is captured before user code runs (overriding process.exit, fs.writeSync, JSON, Buffer or
// prototypes changes nothing); the frame is serialized by hand, never through a toJSON or getter
// the code could have planted; stdout and stderr writes are made synchronous and whole, so nothing
// is pending (or lost) when the process ends.
"use strict";

const fs = require("fs");
const path = require("path");
const vm = require("vm");

const CODE_FILENAME = "<code>";
const MAX_TEXT = 64 * 1024;
const MAX_ARTIFACTS = 1000;
const MAX_SKIPPED = 100;
const MAX_NAME = 1024;

const apply = Reflect.apply;
const writeSync = fs.writeSync;
const readSync = fs.readSync;
const stringify = JSON.stringify;
const parse = JSON.parse;
const bufferAlloc = Buffer.alloc;
const bufferFrom = Buffer.from;
const byteLength = Buffer.byteLength;
const bufferFill = Buffer.prototype.fill;
const bufferWrite = Buffer.prototype.write;
const bufferToString = Buffer.prototype.toString;
const bufferConcat = Buffer.concat;
const atomicsWait = Atomics.wait;
const reallyExit = process.reallyExit;
const once = process.once;
const on = process.on;
const listenerCount = process.listenerCount;
const kill = process.kill;
const readdirSync = fs.readdirSync;
const readFileSync = fs.readFileSync;
const pause = new Int32Array(new SharedArrayBuffer(4));
const toText = String;
const split = String.prototype.split;
const includes = String.prototype.includes;
const startsWith = String.prototype.startsWith;
const join = Array.prototype.join;
const RUNNER_FILENAME = __filename;

function writeAll(fd, data) {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += writeSync(fd, data, offset, data.length - offset);
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
      apply(atomicsWait, Atomics, [pause, 0, 0, 1]); // a non-blocking pipe is full: wait a little for room
    }
  }
}

function encode(text) {
  return apply(bufferFrom, Buffer, [text, "utf8"]);
}

function readJob() {
  const chunks = [];
  const buffer = apply(bufferAlloc, Buffer, [1 << 16]);
  for (;;) {
    let count;
    try {
      count = readSync(0, buffer, 0, buffer.length, null);
    } catch (error) {
      if (error.code === "EAGAIN") continue;
      if (error.code === "EOF") break;
      throw error;
    }
    if (count === 0) break;
    const chunk = apply(bufferAlloc, Buffer, [count]);
    buffer.copy(chunk, 0, 0, count);
    chunks.push(chunk);
  }
  const raw = chunks.length === 1 ? chunks[0] : bufferConcat(chunks);
  const job = parse(apply(bufferToString, raw, ["utf8"]));
  // Wipe every copy of the job's bytes (small buffers share a pool user code can read).
  for (const chunk of [buffer, raw, ...chunks]) apply(bufferFill, chunk, [0]);
  return job;
}

function keepMarker(job) {
  const text = toText(job.marker);
  const marker = apply(bufferAlloc, Buffer, [byteLength(text, "utf8")]); // alloc is never pooled
  apply(bufferWrite, marker, [text, "utf8"]);
  job.marker = undefined;
  return marker;
}

// stdout/stderr writes of streams (console.log, process.stdout.write) go out synchronously and
// whole: libuv would queue what a short pipe write left over, and process.exit would drop it.
function makeWholeAndSynchronous(stream, fd) {
  stream._write = (chunk, encoding, callback) => {
    try {
      writeAll(fd, typeof chunk === "string" ? encode(chunk) : chunk);
    } catch (error) {
      callback(error);
      return;
    }
    callback();
  };
  stream._writev = (chunks, callback) => {
    try {
      for (const { chunk } of chunks) writeAll(fd, typeof chunk === "string" ? encode(chunk) : chunk);
    } catch (error) {
      callback(error);
      return;
    }
    callback();
  };
}

function patchStdio() {
  for (const [name, fd] of [["stdout", 1], ["stderr", 2]]) {
    const descriptor = Object.getOwnPropertyDescriptor(process, name);
    if (!descriptor || typeof descriptor.get !== "function") continue;
    let stream;
    Object.defineProperty(process, name, {
      configurable: true,
      enumerable: descriptor.enumerable,
      get() {
        if (stream === undefined) {
          stream = apply(descriptor.get, process, []);
          makeWholeAndSynchronous(stream, fd);
        }
        return stream;
      },
    });
  }
}

function cut(text) {
  return text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT)}... [${text.length - MAX_TEXT} characters cut]`;
}

function isFrame(line) {
  return apply(startsWith, line, ["    at "]);
}

// The user's part of a V8 stack text, as the Python runner shows only the user's frames: the
// runner's own frames go, and so does every frame below the user's outermost one (node's module
// loader, or the vm calls that compiled code with a syntax error). Frames of node's libraries that
// the user's code called stay, like library frames in a Python traceback.
function userStack(stack) {
  const kept = [];
  for (const line of apply(split, stack, ["\n"])) {
    if (!(isFrame(line) && apply(includes, line, [RUNNER_FILENAME]))) kept[kept.length] = line;
  }
  let end = kept.length;
  while (end > 0 && isFrame(kept[end - 1]) && !apply(includes, kept[end - 1], [`${CODE_FILENAME}:`])) end -= 1;
  kept.length = end;
  return apply(join, kept, ["\n"]);
}

function errorInfo(error) {
  try {
    if (error instanceof Error) {
      const stack = error.stack ? userStack(toText(error.stack)) : toText(error);
      return { type: cut(toText(error.name || "Error")), message: cut(toText(error.message)), traceback: cut(stack) };
    }
    return { type: "Error", message: cut(toText(error)), traceback: cut(`Uncaught ${toText(error)}`) };
  } catch (_) {
    return { type: "Error", message: "an error that cannot be shown", traceback: "" };
  }
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
    const entries = fs.readdirSync(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      const rel = path.relative(outputDir, full);
      if (entry.isDirectory()) { walk(full); continue; }
      if (!entry.isFile()) continue; // symbolic links are never followed
      if (extensions.length && !extensions.includes(path.extname(entry.name).toLowerCase())) continue;
      const size = fs.statSync(full).size;
      if (size > budget || artifacts.length >= MAX_ARTIFACTS || rel.length > MAX_NAME) {
        skipped.push(rel.slice(0, MAX_NAME));
        continue;
      }
      const content = fs.readFileSync(full);
      if (content.length > budget) { skipped.push(rel); continue; }
      budget -= content.length;
      artifacts.push({ name: rel, mime_type: guessMime(entry.name), size: content.length, content_base64: content.toString("base64") });
    }
  };
  try { walk(outputDir); } catch (error) { skipped.push(toText(error.message)); }
  return { artifacts, skipped: skipped.slice(0, MAX_SKIPPED) };
}

const MIME_TYPES = {
  ".txt": "text/plain", ".csv": "text/csv", ".json": "application/json", ".html": "text/html",
  ".md": "text/markdown", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
  ".gif": "image/gif", ".svg": "image/svg+xml", ".pdf": "application/pdf", ".xml": "application/xml",
};

function guessMime(name) {
  return MIME_TYPES[path.extname(name).toLowerCase()] || "application/octet-stream";
}

// Serialized by hand from primitives: JSON.stringify of a string or number consults nothing user
// code can plant (no toJSON, no getters), unlike objects and arrays.
function jsonText(value) {
  return stringify(toText(value));
}

function jsonList(items, render) {
  let text = "[";
  for (let index = 0; index < items.length; index += 1) text += (index ? ", " : "") + render(items[index]);
  return `${text}]`;
}

function frameJson(report) {
  const error = report.error === null
    ? "null"
    : `{"type": ${jsonText(report.error.type)}, "message": ${jsonText(report.error.message)}, "traceback": ${jsonText(report.error.traceback)}}`;
  const artifact = (a) => `{"name": ${jsonText(a.name)}, "mime_type": ${jsonText(a.mime_type)}, "size": ${stringify(Number(a.size))}, "content_base64": ${jsonText(a.content_base64)}}`;
  let text = `{"value": ${report.valueJson}, "exit_code": ${stringify(report.exitCode)}, "error": ${error}, "has_main": ${report.hasMain ? "true" : "false"}`;
  text += `, "artifacts": ${jsonList(report.artifacts, artifact)}, "skipped_artifacts": ${jsonList(report.skipped, jsonText)}`;
  if (report.valueTooLarge !== null) text += `, "value_too_large": ${stringify(report.valueTooLarge)}`;
  return `${text}}\n`;
}

// Process 1 of a sandbox stops every process the code started, so that nothing else writes to
// stdout while the frame is written (never done outside a sandbox). A killed process may still
// finish the write it was in, and node cannot wait for processes it did not start: /proc shows
// when they are all dead (zombies), within a bound.
function otherProcessesAlive() {
  for (const name of readdirSync("/proc")) {
    if (name === "1" || name === "self" || name === "thread-self" || !(name >= "0" && name <= "9~")) continue;
    let stat;
    try { stat = readFileSync(`/proc/${name}/stat`, "latin1"); } catch (_) { continue; }
    const state = stat[stat.lastIndexOf(")") + 2];
    if (state !== "Z" && state !== "X") return true;
  }
  return false;
}

function stopEveryOtherProcess() {
  try {
    apply(kill, process, [-1, "SIGKILL"]);
    for (let tries = 0; tries < 2000 && otherProcessesAlive(); tries += 1) apply(atomicsWait, Atomics, [pause, 0, 0, 1]);
  } catch (_) { /* nothing else runs */ }
}

function serve() {
  const job = readJob();
  const marker = keepMarker(job);
  const outputDir = job.output_dir || null;
  const maxArtifactBytes = Number(job.max_artifact_bytes || 0);
  const maxValueBytes = typeof job.max_value_bytes === "number" ? job.max_value_bytes : Infinity;
  const extensions = Array.isArray(job.artifact_extensions) ? job.artifact_extensions : [];
  const promoteWorkingDir = Boolean(job.promote_working_dir);
  const report = { valueJson: "null", exitCode: 0, error: null, hasMain: false, artifacts: [], skipped: [], valueTooLarge: null };
  let reported = false;

  const finish = (exitCode) => {
    if (reported) return;
    reported = true;
    report.exitCode = Number.isInteger(exitCode) && exitCode >= 0 && exitCode < 256 ? exitCode : 1;
    try {
      if (outputDir && extensions.length && promoteWorkingDir) promote(outputDir, extensions);
      const { artifacts, skipped } = collectArtifacts(outputDir, maxArtifactBytes, extensions);
      report.artifacts = artifacts;
      report.skipped = skipped;
    } catch (_) { /* artifacts are best effort */ }
    const body = encode(frameJson(report));
    if (process.pid === 1) stopEveryOtherProcess();
    writeAll(1, marker);
    writeAll(1, body);
    apply(reallyExit, process, [report.exitCode]);
  };
  const exitCodeOf = (code) => {
    try {
      const chosen = code === undefined ? process.exitCode : code;
      return Number(chosen || 0);
    } catch (_) {
      return 1;
    }
  };

  const fail = (error) => {
    if (reported) return;
    report.error = errorInfo(error);
    try { writeAll(2, encode(`${report.error.traceback}\n`)); } catch (_) { /* stderr closed */ }
    finish(1);
  };

  process.exitCode = 0;
  process.exit = (code) => finish(exitCodeOf(code));
  // An error nothing catches (thrown in a callback, a rejection nobody handles) ends the run like
  // one thrown by the code itself, with the same report, unless the code listens for it itself.
  apply(on, process, ["uncaughtExceptionMonitor", (error) => {
    if (apply(listenerCount, process, ["uncaughtException"]) === 0) fail(error);
  }]);
  patchStdio();
  if (outputDir) {
    try { fs.mkdirSync(outputDir, { recursive: true }); process.env.SANDBOX_OUTPUT_DIR = outputDir; } catch (_) { /* no output folder */ }
  }

  const run = async () => {
    try {
      const wrapper = vm.runInThisContext(
        // The wrapper's header has a line of its own, numbered 0, so the code's lines and columns are its own.
        `(function (exports, require, module, __filename, __dirname) {\n${job.code}\n;return typeof main === "function" ? main : undefined;\n})`,
        { filename: CODE_FILENAME, lineOffset: -1 },
      );
      const module = { exports: {} };
      let main = wrapper.call(module.exports, module.exports, require, module, CODE_FILENAME, "/");
      if (typeof main !== "function" && module.exports && typeof module.exports.main === "function") main = module.exports.main;
      if (typeof main === "function") {
        report.hasMain = true;
        const value = await main(job.arguments || {});
        if (value !== undefined) {
          const encoded = stringify(value);
          if (encoded === undefined) throw new TypeError("main() returned a value that is not JSON data");
          const size = byteLength(encoded, "utf8");
          if (size > maxValueBytes) report.valueTooLarge = size;
          else report.valueJson = encoded;
        }
      }
    } catch (error) {
      fail(error);
      return;
    }
    // Code may set process.exitCode instead of calling process.exit; honour it like node does.
    // Code without main may still have timers or I/O pending: report once the loop is idle.
    if (report.hasMain) finish(exitCodeOf(undefined));
    else apply(once, process, ["beforeExit", () => finish(exitCodeOf(undefined))]);
  };
  run();
}

serve();
