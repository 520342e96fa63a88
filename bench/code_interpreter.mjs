#!/usr/bin/env node
// The code interpreter through @e2b/code-interpreter against warmbox
// (docs/services.md): runCode('1+1') on a claimed warm sandbox (p50, p99),
// create-then-first-runCode (p50, p99), commands.run("python3 -c '1+1'") in
// the same sandbox, and the memory of each warm code-interpreter sandbox
// (memory.current of the pool's sandbox cgroups, before any claim). Targets:
// runCode p50 <= 10 ms, create + first runCode p50 <= 50 ms. The ns driver;
// root. Needs the code-interpreter-v1 template (warmbox template
// build-debian code-interpreter-v1): skipped, saying so, when it cannot be
// built.
//
// Usage: bench/code_interpreter.mjs BUILD_DIR   (make bench runs it)
// Output: BUILD_DIR/bench-code-interpreter.json and a table on stdout.
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const build = path.resolve(process.argv[2] || path.join(HERE, '..', 'build'))
process.env.WARMBOX_BUILD_DIR = build
const { Daemon, skipReason, eventually } = await import(pathToFileURL(path.join(HERE, '..', 'tests', 'e2b', 'daemon.mjs')))
const require = createRequire(path.join(HERE, '..', 'tests', 'e2b', 'package.json'))
const { Sandbox } = await import(pathToFileURL(require.resolve('@e2b/code-interpreter')))

const TEMPLATE = 'code-interpreter-v1'
const ROUNDS = Number(process.env.ROUNDS || 200)          // runCode and commands.run
const CREATES = Number(process.env.CREATES || 30)          // create + first runCode
const POOL = 2

const why = skipReason()
if (why) {
  console.error(`code_interpreter: skipped: ${why}`)
  process.exit(0)
}

function pct (xs, p) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]
}

const d = new Daemon({ args: ['--image', TEMPLATE, '--size', String(POOL), '--max', '8'] })
{
  const argv = d.cli('template', 'build-debian', '-q', TEMPLATE)
  const built = spawnSync(argv[0], argv.slice(1), { env: d.env, encoding: 'utf8', timeout: 1_800_000 })
  if (built.status !== 0) {
    console.error(`code_interpreter: skipped: template build-debian ${TEMPLATE}: ${built.stderr || built.error}`)
    process.exit(0)
  }
}
await d.start()
const opts = { ...d.opts, template: TEMPLATE }

// The pool's idle count of the template (pool status --json).
function idle () {
  const argv = d.cli('pool', 'status', '--json', '--socket', d.socket)
  const r = spawnSync(argv[0], argv.slice(1), { env: d.env, encoding: 'utf8' })
  if (r.status !== 0) return -1
  const pools = JSON.parse(r.stdout)
  const list = Array.isArray(pools) ? pools : (pools.images || [])
  const p = list.find(x => String(x.image).includes(TEMPLATE))
  return p ? p.idle : -1
}
// Every claim below is a warm one: the pool is back to its size first.
const settled = async () => {
  if (!await eventually(() => idle() >= POOL, 120000, 50)) throw new Error(`the pool did not refill:\n${d.log()}`)
}

const times = { run_code: [], commands_run_python: [], create_first_run_code: [] }
let memory = []
try {
  // One unmeasured round: the first create of a pool's image pays for it.
  await settled()
  await (await Sandbox.create(opts)).kill()
  await settled()
  // Memory of each warm sandbox: the pool's sandbox cgroups (none claimed now).
  // cgroup v2 (memory.current) or v1's memory hierarchy (memory.usage_in_bytes).
  for (const [cg, file] of [[`/sys/fs/cgroup${d.cgroupParent}`, 'memory.current'],
    [`/sys/fs/cgroup/memory${d.cgroupParent}`, 'memory.usage_in_bytes']]) {
    if (!fs.existsSync(cg) || memory.length) continue
    for (const name of fs.readdirSync(cg)) {
      try {
        memory.push(Number(fs.readFileSync(path.join(cg, name, file), 'utf8')))
      } catch { /* not a sandbox's */ }
    }
  }

  const s = await Sandbox.create(opts)
  await s.runCode('1+1')
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now()
    const ex = await s.runCode('1+1')
    times.run_code.push(performance.now() - t0)
    if (ex.text !== '2') throw new Error(`runCode('1+1') gave ${JSON.stringify(ex.text)}`)
  }
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now()
    await s.commands.run("python3 -c '1+1'")
    times.commands_run_python.push(performance.now() - t0)
  }
  await s.kill()

  for (let i = 0; i < CREATES; i++) {
    await settled()
    const t0 = performance.now()
    const c = await Sandbox.create(opts)
    const ex = await c.runCode('1+1')
    times.create_first_run_code.push(performance.now() - t0)
    if (ex.text !== '2') throw new Error(`first runCode('1+1') gave ${JSON.stringify(ex.text)}`)
    await c.kill()
  }
} finally {
  const problems = await d.stop()
  if (problems.length) console.error(problems.join('\n'))
}

const rows = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, { p50: pct(v, 0.5), p99: pct(v, 0.99) }]))
const mib = memory.length ? memory.reduce((a, b) => a + b, 0) / memory.length / (1 << 20) : null
const out = {
  rounds: ROUNDS,
  creates: CREATES,
  ms: rows,
  memory_per_warm_sandbox_mib: mib,
  warm_sandboxes_measured: memory.length,
  targets_ms: { run_code_p50: 10, create_first_run_code_p50: 50 }
}
fs.writeFileSync(path.join(build, 'bench-code-interpreter.json'), JSON.stringify(out, null, 2) + '\n')
console.log(`@e2b/code-interpreter against warmbox (ns), ms:`)
for (const [k, v] of Object.entries(rows)) console.log(`  ${k.padEnd(24)} p50 ${v.p50.toFixed(2).padStart(8)}   p99 ${v.p99.toFixed(2).padStart(8)}`)
console.log(`  runCode('1+1') p50 target <= 10 ms; create + first runCode p50 target <= 50 ms`)
console.log(`  memory per warm sandbox: ${mib === null ? 'n/a' : mib.toFixed(1) + ' MiB'} (memory.current, ${memory.length} sandboxes)`)
