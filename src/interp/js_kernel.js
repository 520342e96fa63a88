// One JavaScript context of warmbox's code interpreter (docs/e2b.md, "Code
// interpreter"): a Node process whose global scope persists between
// executions. Requests arrive as JSON lines on stdin:
//   {"id":N,"code":"...","env_before":{K:V|null},"env_after":{K:V|null}}
//   {"id":N,"env_before":{...}}   (env only)
// and events leave as JSON lines on the fd named by argv[2]:
//   {"id":N,"type":"number_of_executions","execution_count":C}
//   {"id":N,"type":"stdout"|"stderr","text":"..."}
//   {"id":N,"type":"result","text":"..."}
//   {"id":N,"type":"error","name":"...","value":"...","traceback":"..."}
//   {"id":N,"type":"done"}
// Code runs with vm.runInThisContext (top-level let/const and var persist;
// this process is the context, so contexts are isolated by process);
// SIGINT interrupts a running script (breakOnSigint) or abandons an awaited
// promise. The last expression's value is the result (util.inspect), a
// promise's once it settles.
'use strict'
const fs = require('fs')
const vm = require('vm')
const util = require('util')
const readline = require('readline')
const { createRequire } = require('module')

const EVENTS_FD = Number(process.argv[2])
let current = 0 // the id of the running execution
let count = 0
let abandon = null // rejects the awaited promise on SIGINT

function emit (ev) {
  ev.id = current
  fs.writeSync(EVENTS_FD, JSON.stringify(ev) + '\n')
}

// Output of the context's code goes to the events fd, in order with results.
function patch (stream, name) {
  stream.write = function (chunk, encoding, cb) {
    if (typeof encoding === 'function') { cb = encoding; encoding = undefined }
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString(encoding || 'utf8')
    if (text) emit({ type: name, text })
    if (cb) process.nextTick(cb)
    return true
  }
}
patch(process.stdout, 'stdout')
patch(process.stderr, 'stderr')

globalThis.require = createRequire(process.cwd() + '/')

function applyEnv (env) {
  for (const [k, v] of Object.entries(env || {})) {
    if (v === null) delete process.env[k]
    else process.env[k] = v
  }
}

// The stack without this kernel's own frames.
function trace (e) {
  return String(e.stack || e).split('\n')
    .filter(l => !/^\s+at .*(node:vm|node:internal|js_kernel\.js)/.test(l)).join('\n')
}

function errorEvent (e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e)) {
    return { type: 'error', name: e.name || 'Error', value: e.message || String(e), traceback: trace(e) }
  }
  return { type: 'error', name: 'Error', value: util.inspect(e), traceback: 'Uncaught ' + util.inspect(e) }
}

function interrupted () {
  const e = new Error('Script execution interrupted.')
  e.name = 'KeyboardInterrupt'
  return e
}

process.on('SIGINT', () => { if (abandon) abandon(interrupted()) })
// An error thrown later by a timer of an earlier execution: shown, not fatal.
process.on('uncaughtException', e => { emit(errorEvent(e)) })
process.on('unhandledRejection', e => { emit(errorEvent(e)) })

async function run (code) {
  let value
  try {
    value = vm.runInThisContext(code, { filename: `<cell ${count}>`, breakOnSigint: true, displayErrors: false })
  } catch (e) {
    if (e instanceof SyntaxError && /await/.test(e.message) && /\bawait\b/.test(code)) {
      // Top-level await: run as an async function (its declarations stay local).
      value = vm.runInThisContext(`(async () => {\n${code}\n})()`, { filename: `<cell ${count}>`, breakOnSigint: true })
    } else if (e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') {
      throw interrupted()
    } else {
      throw e
    }
  }
  if (value && typeof value.then === 'function') {
    value = await new Promise((resolve, reject) => {
      abandon = reject
      value.then(resolve, reject)
    }).finally(() => { abandon = null })
  }
  return value
}

async function handle (req) {
  current = req.id
  applyEnv(req.env_before)
  if (typeof req.code === 'string') {
    count++
    emit({ type: 'number_of_executions', execution_count: count })
    try {
      const value = await run(req.code)
      if (value !== undefined) emit({ type: 'result', text: util.inspect(value) })
    } catch (e) {
      emit(errorEvent(e))
    }
    applyEnv(req.env_after)
  }
  emit({ type: 'done' })
}

// One request at a time, in order.
let chain = Promise.resolve()
readline.createInterface({ input: process.stdin }).on('line', l => {
  if (!l.trim()) return
  let req
  try { req = JSON.parse(l) } catch { return }
  chain = chain.then(() => handle(req))
}).on('close', () => process.exit(0))
